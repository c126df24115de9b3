"""The event stream: a durable decision log and label/transaction events on NATS JetStream,
folded into the online feature state by a stream processor, and appended to the offline log."""
