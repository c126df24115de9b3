"""riskml.data.disputes: the disputes line's data (schema, evidence, documents, simulator,
importer). Import the submodules; nothing is imported here."""
