"""Text analysis helpers for InsightMiner."""
from collections import Counter


def summarize(path):
    with open(path, encoding="utf-8") as f:
        words = f.read().split()
    return Counter(w.lower().strip(".,;:!?") for w in words).most_common(10)
