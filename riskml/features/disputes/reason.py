"""The reason-code family of a dispute from the customer's own words.

Two classifiers with one interface (``predict(messages) -> families``), families from
:data:`riskml.data.disputes.schema.REASON_FAMILIES` (fraud, authorisation, processing_error,
consumer_dispute):

* :class:`KeywordReasonClassifier`, the baseline: weighted keyword and phrase hits per family;
* :class:`ReasonClassifier`: TF-IDF (word 1-2-grams and character 3-5-grams within word
  boundaries) + multinomial logistic regression (scikit-learn), trained on labelled messages.

:class:`ReasonClassifier` saves as JSON (vocabularies, idf weights, coefficients, intercepts and
the vectoriser settings), never pickle; loading rebuilds the scikit-learn objects from those
arrays, so a loaded model predicts exactly what the trained one did.
:func:`evaluate_reason` scores both on held-out messages in one run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskml.data.disputes.schema import REASON_FAMILIES

if TYPE_CHECKING:
    import numpy as np
    from scipy.sparse import spmatrix

FORMAT = "riskml.reason-classifier/1"

#: Family -> (pattern, weight). Patterns are regexes over the lower-cased message.
KEYWORDS: dict[str, tuple[tuple[str, float], ...]] = {
    "fraud": (
        (r"\bfraud", 2.0),
        (r"\bunauthori[sz]ed\b", 2.0),
        (r"\bnot authori[sz]ed\b", 2.0),
        (r"\b(?:did ?n[o']?t|never) (?:make|made|authori[sz]e|place|buy|bought)", 2.0),
        (r"\b(?:do ?n[o']?t|did ?n[o']?t) recogni[sz]e", 2.0),
        (r"\bstolen\b", 1.5),
        (r"\b(?:lost|missing) (?:my )?card\b", 1.5),
        (r"\bsomeone (?:else )?(?:used|has|must have)", 1.5),
        (r"\b(?:was ?n[o']?t|not) me\b", 1.5),
        (r"\b(?:hacked|compromised|identity theft|skimm)", 1.5),
        (r"\bnever (?:shopped|heard of)\b", 1.0),
    ),
    "authorisation": (
        (r"\bauthori[sz]ation\b", 1.5),
        (r"\bdeclined\b", 2.0),
        (r"\bexpired\b", 1.5),
        (r"\bwithout (?:an? )?(?:approval|authori[sz]ation)\b", 1.5),
        (r"\b(?:approval|auth) code\b", 1.5),
        (r"\bwas (?:refused|rejected)\b", 1.0),
    ),
    "processing_error": (
        (r"\b(?:charged|billed|debited) (?:me )?(?:twice|two times|double)", 2.5),
        (r"\bdouble[- ]?(?:charged|billed|charge)", 2.5),
        (r"\bduplicate", 2.0),
        (r"\btwice\b", 1.5),
        (r"\b(?:wrong|incorrect|different) (?:amount|total|price|currency)", 2.5),
        (r"\bovercharg", 2.0),
        (r"\bmore than (?:the|what|i)\b", 1.0),
        (r"\b(?:already|also) paid\b", 1.5),
        (r"\bpaid (?:by|with|in) (?:cash|another|other|a different)", 2.0),
    ),
    "consumer_dispute": (
        (r"\bnever (?:arrived|came|received|got|delivered)", 2.0),
        (r"\b(?:not|never|wasn'?t|was not) (?:been )?(?:received|delivered)", 2.0),
        (r"\bdid ?n[o']?t (?:receive|arrive|get)", 2.0),
        (r"\bnot as described\b", 2.0),
        (r"\b(?:damaged|defective|broken|faulty|counterfeit|fake)\b", 1.5),
        (r"\b(?:wrong|different) (?:item|product|size|colou?r)\b", 1.5),
        (r"\brefund", 1.0),
        (r"\breturn(?:ed)?\b", 1.0),
        (r"\bcancel", 1.5),
        (r"\bsubscription|\brecurring|\bmembership", 1.5),
        (r"\bcredit\b", 1.0),
        (r"\b(?:package|parcel|order|delivery|shipment)\b", 0.5),
    ),
}
#: When no keyword fires (or on a tie), the commonest family in practice.
DEFAULT_FAMILY = "consumer_dispute"


@dataclass
class KeywordReasonClassifier:
    """Baseline: the family with the largest weighted keyword score (ties: the order of
    :data:`KEYWORDS`; nothing found: :data:`DEFAULT_FAMILY`)."""

    keywords: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=lambda: KEYWORDS)
    name: str = "keywords"

    def __post_init__(self) -> None:
        unknown = set(self.keywords) - set(REASON_FAMILIES)
        if unknown:
            raise ValueError(f"unknown reason families {sorted(unknown)}")
        self._compiled = {
            fam: [(re.compile(p), w) for p, w in rules] for fam, rules in self.keywords.items()
        }

    def scores(self, message: str) -> dict[str, float]:
        text = message.lower().replace("’", "'")
        return {
            fam: sum(w for p, w in rules if p.search(text)) for fam, rules in self._compiled.items()
        }

    def predict(self, messages: Sequence[str]) -> list[str]:
        out = []
        for message in messages:
            scores = self.scores(message)
            best = max(scores.values(), default=0.0)
            out.append(
                next(f for f, s in scores.items() if s == best) if best > 0 else DEFAULT_FAMILY
            )
        return out


def _vectorisers(params: dict[str, Any]) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        lowercase=True,
        sublinear_tf=True,
        min_df=params["min_df"],
        token_pattern=r"(?u)\b\w[\w']*\b",
    )
    char = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(3, 5),
        lowercase=True,
        sublinear_tf=True,
        min_df=params["min_df"],
    )
    return word, char


@dataclass
class ReasonClassifier:
    """TF-IDF + logistic regression over the customer's message (see the module docstring)."""

    c: float = 4.0
    min_df: int = 2
    max_iter: int = 2000
    name: str = "tfidf_logreg"
    _word: Any = None
    _char: Any = None
    _model: Any = None

    def _trained(self) -> Any:
        if self._model is None or self._word is None:
            raise RuntimeError("ReasonClassifier is not trained: call fit() or load()")
        return self._model

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self._trained().classes_]

    def _features(self, messages: Sequence[str]) -> spmatrix:
        from scipy.sparse import hstack

        self._trained()
        texts = [str(m) for m in messages]
        return hstack([self._word.transform(texts), self._char.transform(texts)]).tocsr()

    def fit(self, messages: Sequence[str], families: Sequence[str]) -> ReasonClassifier:
        from scipy.sparse import hstack
        from sklearn.linear_model import LogisticRegression

        if len(messages) != len(families):
            raise ValueError(f"{len(messages)} messages but {len(families)} families")
        unknown = sorted(set(families) - set(REASON_FAMILIES))
        if unknown:
            raise ValueError(f"unknown reason families {unknown}; known: {REASON_FAMILIES}")
        if len(set(families)) < 2:
            raise ValueError("need messages of at least two families to train")
        texts = [str(m) for m in messages]
        self._word, self._char = _vectorisers({"min_df": self.min_df})
        x = hstack([self._word.fit_transform(texts), self._char.fit_transform(texts)]).tocsr()
        self._model = LogisticRegression(C=self.c, max_iter=self.max_iter)
        self._model.fit(x, list(families))
        return self

    def predict_proba(self, messages: Sequence[str]) -> np.ndarray:
        """Probabilities, columns in :attr:`classes` order."""
        model = self._trained()
        proba: np.ndarray = model.predict_proba(self._features(messages))
        return proba

    def predict(self, messages: Sequence[str]) -> list[str]:
        model = self._trained()
        if not messages:
            return []
        return [str(c) for c in model.predict(self._features(messages))]

    # -- JSON persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        model = self._trained()

        def vec(v: Any) -> dict[str, Any]:
            vocab = sorted(v.vocabulary_.items(), key=lambda kv: kv[1])
            return {"terms": [t for t, _ in vocab], "idf": [float(x) for x in v.idf_]}

        return {
            "format": FORMAT,
            "params": {"c": self.c, "min_df": self.min_df, "max_iter": self.max_iter},
            "word": vec(self._word),
            "char": vec(self._char),
            "classes": self.classes,
            "coef": [[float(x) for x in row] for row in model.coef_],
            "intercept": [float(x) for x in model.intercept_],
        }

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasonClassifier:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        if data.get("format") != FORMAT:
            raise ValueError(
                f"not a reason classifier (format {data.get('format')!r}, expected {FORMAT!r})"
            )
        params = data["params"]
        out = cls(c=params["c"], min_df=params["min_df"], max_iter=params["max_iter"])
        word, char = _vectorisers(params)
        for v, saved in ((word, data["word"]), (char, data["char"])):
            v.vocabulary = {t: i for i, t in enumerate(saved["terms"])}
            v.fit([""])  # fixed vocabulary: fit only marks it fitted
            v.idf_ = np.asarray(saved["idf"], dtype=np.float64)
        model = LogisticRegression(C=params["c"], max_iter=params["max_iter"])
        model.classes_ = np.asarray(data["classes"])
        model.coef_ = np.asarray(data["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(data["intercept"], dtype=np.float64)
        n_features = len(data["word"]["terms"]) + len(data["char"]["terms"])
        if model.coef_.shape != (len(model.classes_), n_features):
            raise ValueError(
                f"coefficients {model.coef_.shape} do not fit {len(model.classes_)} classes x "
                f"{n_features} terms"
            )
        model.n_features_in_ = n_features
        out._word, out._char, out._model = word, char, model
        return out

    @classmethod
    def load(cls, path: Path | str) -> ReasonClassifier:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class ReasonScores:
    """Held-out accuracy of the classifier and the keyword baseline, and per-family recall."""

    n: int
    accuracy: float
    baseline_accuracy: float
    per_family: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "reason_family_accuracy": self.accuracy,
            "keyword_baseline_accuracy": self.baseline_accuracy,
            "per_family": self.per_family,
        }


def evaluate_reason(
    classifier: ReasonClassifier,
    messages: Sequence[str],
    families: Sequence[str],
    baseline: KeywordReasonClassifier | None = None,
) -> ReasonScores:
    """Accuracy of ``classifier`` and of the keyword baseline on the same held-out messages."""
    if not messages or len(messages) != len(families):
        raise ValueError("need as many families as messages, and at least one message")
    baseline = baseline or KeywordReasonClassifier()
    pred = classifier.predict(messages)
    base = baseline.predict(messages)
    n = len(messages)
    per: dict[str, dict[str, float]] = {}
    for fam in sorted(set(families)):
        idx = [i for i, f in enumerate(families) if f == fam]
        per[fam] = {
            "n": len(idx),
            "recall": sum(pred[i] == fam for i in idx) / len(idx),
            "baseline_recall": sum(base[i] == fam for i in idx) / len(idx),
        }
    return ReasonScores(
        n=n,
        accuracy=sum(p == t for p, t in zip(pred, families, strict=True)) / n,
        baseline_accuracy=sum(p == t for p, t in zip(base, families, strict=True)) / n,
        per_family=per,
    )
