"""Generate the synthetic ``text-demo`` dataset (standard library only, fully deterministic).

Why synthetic: the app needs a small text dataset that ships with the repo, loads offline in
a second, and has a *known* hidden structure. Every review has a binary sentiment label and
a latent ``topic`` (food, electronics, media, travel) that the label does not reveal: labels
are exactly balanced within every topic, so a good pseudo-subclass method should recover the
topic inside each class. A second latent column, ``aspect`` (price, quality, service), says
which aspect the review talks about, also balanced within every (topic, label) cell.

Texts are composed from templates: an optional neutral opener, an optional concession of the
opposite sentiment ("The wait was long, but"), a main clause pairing a topic-specific noun (or
staff + place, for service) with an aspect- and sentiment-specific phrase, and an optional
closing sentence that repeats the sentiment. Duplicates are rejected, so every text is unique
and no text is in both train and test.

Run from the repo root: ``python sample_data/make_text_demo.py`` (writes
``sample_data/text_demo/{train.csv,test.csv,transfer.txt,labels.json,README.md}``).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

SEED = 20240601
TRAIN_PER_CELL = 60  # 4 topics x 2 labels x 3 aspects x 60 = 1,440 train texts
TEST_PER_CELL = 15  # 4 x 2 x 3 x 15 = 360 test texts
NOISY_PER_CELL = 4  # train labels flipped per cell (both directions alike, so balance holds)
TRANSFER_PER_CELL = 50  # 4 x 2 x 3 x 50 = 1,200 unlabeled texts (transfer.txt)
MIXED_P = 0.3  # share of reviews that praise one aspect and fault another
LABELS = {0: "negative", 1: "positive"}
ASPECTS = ("price", "quality", "service")

# Topic-specific vocabulary. Nouns are singular so "<noun> was ..." stays grammatical.
TOPICS: dict[str, dict[str, list[str]]] = {
    "food": {
        "nouns": [
            "the pasta",
            "the ramen",
            "the burger",
            "the sushi platter",
            "the curry",
            "the pizza",
            "the brunch",
            "the seafood risotto",
            "the steak",
            "the vegan bowl",
            "the chocolate cake",
            "the tasting menu",
            "the fish soup",
            "the lunch special",
        ],
        "places": [
            "this restaurant",
            "this bistro",
            "this diner",
            "this cafe",
            "this noodle bar",
            "this pizzeria",
            "this steakhouse",
            "this food truck",
        ],
        "staff": ["the waiter", "the staff", "the chef", "the host", "our server"],
        "price_ctx": ["for a weeknight dinner", "for a meal this size", "for lunch", ""],
        "quality_pos": [
            "was fresh and full of flavor",
            "tasted amazing",
            "was cooked perfectly",
            "was rich and delicious",
            "was the best I have eaten in years",
            "was hot, fresh and generous",
        ],
        "quality_neg": [
            "was bland and overcooked",
            "tasted stale",
            "was cold and greasy",
            "was burnt on one side",
            "was soggy and tasteless",
            "gave me a stomach ache",
        ],
    },
    "electronics": {
        "nouns": [
            "the laptop",
            "the phone",
            "the charger",
            "the smartwatch",
            "the tablet",
            "the speaker",
            "the monitor",
            "the keyboard",
            "the router",
            "the camera",
            "the headset",
            "the e-reader",
            "the power bank",
            "the vacuum robot",
        ],
        "places": [
            "this brand",
            "this store",
            "this online shop",
            "this retailer",
            "this manufacturer",
            "this electronics chain",
        ],
        "staff": [
            "customer support",
            "the support team",
            "the delivery service",
            "the returns desk",
            "the technician",
        ],
        "price_ctx": ["compared to other models", "for the specs you get", "on sale", ""],
        "quality_pos": [
            "works flawlessly",
            "feels solid and well built",
            "has excellent battery life",
            "runs fast and smooth",
            "set up in two minutes",
            "has crisp, clear sound",
        ],
        "quality_neg": [
            "stopped working after a week",
            "feels cheap and flimsy",
            "keeps crashing",
            "overheats constantly",
            "arrived with a cracked case",
            "drains its battery by noon",
        ],
    },
    "media": {
        "nouns": [
            "the novel",
            "the film",
            "the sequel",
            "the documentary",
            "the thriller",
            "the memoir",
            "the audiobook",
            "the series",
            "the comedy",
            "the paperback",
            "the mystery",
            "the graphic novel",
            "the biography",
            "the animated movie",
        ],
        "places": [
            "this cinema",
            "this bookshop",
            "this streaming service",
            "this theater",
            "this publisher",
            "this book club",
        ],
        "staff": [
            "the staff",
            "the manager",
            "customer service",
            "the help desk",
            "the team",
        ],
        "price_ctx": ["at full price", "for what you get", "these days", ""],
        "quality_pos": [
            "was gripping from start to finish",
            "had a clever, moving story",
            "was beautifully written",
            "had superb acting",
            "made me laugh out loud",
            "kept me up all night",
        ],
        "quality_neg": [
            "was dull and predictable",
            "dragged on forever",
            "had a clumsy, confusing plot",
            "had wooden acting",
            "put me to sleep",
            "ended in a lazy twist",
        ],
    },
    "travel": {
        "nouns": [
            "the room",
            "the suite",
            "the flight",
            "the city tour",
            "the beach resort",
            "the breakfast buffet",
            "the cruise",
            "the rental car",
            "the guesthouse",
            "the spa",
            "the pool",
            "the train ride",
            "the airport shuttle",
            "the cabin",
        ],
        "places": [
            "this hotel",
            "this hostel",
            "this airline",
            "this resort",
            "this travel agency",
            "this inn",
        ],
        "staff": [
            "the staff",
            "the manager",
            "the booking team",
            "customer service",
            "the crew",
        ],
        "price_ctx": ["for a weekend away", "in high season", "for what we got", ""],
        "quality_pos": [
            "was spotless and comfortable",
            "had a stunning view",
            "was quiet and relaxing",
            "was on time and smooth",
            "was roomy and bright",
            "felt like real luxury",
        ],
        "quality_neg": [
            "was dirty and cramped",
            "smelled of smoke",
            "was noisy all night",
            "was delayed for hours",
            "had a broken air conditioner",
            "was shabby and damp",
        ],
    },
}

# Aspect phrases shared by all topics, so topic and sentiment stay separable.
PRICE = {
    1: [
        "was a real bargain",
        "was well worth the money",
        "was surprisingly affordable",
        "was fairly priced",
        "was cheaper than I expected",
        "was great value",
    ],
    0: [
        "was a rip-off",
        "was way overpriced",
        "was not worth the money",
        "cost far too much",
        "was twice what it should cost",
        "was poor value",
    ],
}
SERVICE = {
    1: [
        "treated us kindly",
        "answered every question patiently",
        "went out of their way to help",
        "sorted out our problem in minutes",
        "made us feel welcome",
        "was quick and attentive",
    ],
    0: [
        "ignored us for twenty minutes",
        "treated us rudely",
        "never answered my emails",
        "made the whole thing stressful",
        "shrugged off our complaint",
        "was slow and careless",
    ],
}
OPENERS = [
    "",
    "",
    "",
    "Honestly, ",
    "Overall, ",
    "I have to say ",
    "To be fair, ",
    "In short, ",
    "We tried it last week and ",
    "As a regular, I think ",
]
CONCESSIONS = {  # opposite-sentiment lead-in, so not every word points the same way
    1: ["It was not cheap, but ", "The wait was long, but ", "The start was slow, but "],
    0: ["It looked great at first, but ", "The location is nice, but ", "The ad was fun, but "],
}
CLOSERS = {
    1: [
        "I would happily recommend it.",
        "Five stars from me.",
        "We will definitely be back.",
        "Totally worth it.",
        "A great experience overall.",
        "Could not be happier.",
    ],
    0: [
        "I would not recommend it.",
        "One star.",
        "Never again.",
        "What a disappointment.",
        "I want my money back.",
        "Avoid it if you can.",
    ],
}


def make_clause(rng: random.Random, topic: str, aspect: str, label: int) -> str:
    """One main clause about ``aspect`` of ``topic`` with sentiment ``label``."""
    t = TOPICS[topic]
    if aspect == "service":
        clause = (
            f"{rng.choice(t['staff'])} at {rng.choice(t['places'])} {rng.choice(SERVICE[label])}"
        )
    elif aspect == "price":
        ctx = rng.choice(t["price_ctx"])
        clause = f"{rng.choice(t['nouns'])} {rng.choice(PRICE[label])}" + (f" {ctx}" if ctx else "")
    else:
        key = "quality_pos" if label == 1 else "quality_neg"
        clause = f"{rng.choice(t['nouns'])} {rng.choice(t[key])}"
    return clause


def make_text(rng: random.Random, topic: str, aspect: str, label: int) -> str:
    """Compose one review; every choice comes from ``rng`` so the output is reproducible.

    A mixed review first praises (or faults) another aspect with the opposite sentiment and
    then gives the verdict on ``aspect``; the label follows the verdict, as a reader would.
    """
    clause = make_clause(rng, topic, aspect, label)
    if rng.random() < MIXED_P:
        other = rng.choice([a for a in ASPECTS if a != aspect])
        first = make_clause(rng, topic, other, 1 - label) + ", but " + clause
    elif rng.random() < 0.2:
        first = rng.choice(CONCESSIONS[label]) + clause
    else:
        first = rng.choice(OPENERS) + clause
    text = first[0].upper() + first[1:] + "."
    if rng.random() < 0.6:
        text += " " + rng.choice(CLOSERS[label])
    return text


def generate(seed: int = SEED) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Rows for train and test: each (topic, label, aspect) cell gets a fixed count."""
    rng = random.Random(seed)  # noqa: S311 - a seeded, reproducible demo, not a secret
    seen: set[str] = set()
    train: list[dict[str, object]] = []
    test: list[dict[str, object]] = []
    need = TRAIN_PER_CELL + TEST_PER_CELL
    for topic in TOPICS:
        for label in LABELS:
            for aspect in ASPECTS:
                cell: list[str] = []
                tries = 0
                while len(cell) < need:
                    tries += 1
                    if tries > 100 * need:
                        raise RuntimeError(f"not enough distinct texts for {topic}/{aspect}")
                    text = make_text(rng, topic, aspect, label)
                    if text not in seen:
                        seen.add(text)
                        cell.append(text)
                rows = [{"text": s, "label": label, "topic": topic, "aspect": aspect} for s in cell]
                for row in rows[:NOISY_PER_CELL]:  # annotation noise, train only
                    row["label"] = 1 - label
                train.extend(rows[:TRAIN_PER_CELL])
                test.extend(rows[TRAIN_PER_CELL:])
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def generate_transfer(
    exclude: set[str], seed: int = SEED + 1, per_cell: int = TRANSFER_PER_CELL
) -> list[str]:
    """Unlabeled texts for ``transfer.txt``: the same recipe, a separate seed (so train and
    test stay byte for byte as they were), none equal to a text in ``exclude``, shuffled."""
    rng = random.Random(seed)  # noqa: S311 - a seeded, reproducible demo, not a secret
    seen = set(exclude)
    texts: list[str] = []
    for topic in TOPICS:
        for label in LABELS:
            for aspect in ASPECTS:
                cell: list[str] = []
                tries = 0
                while len(cell) < per_cell:
                    tries += 1
                    if tries > 100 * per_cell:
                        raise RuntimeError(f"not enough distinct texts for {topic}/{aspect}")
                    text = make_text(rng, topic, aspect, label)
                    if text not in seen:
                        seen.add(text)
                        cell.append(text)
                texts.extend(cell)
    rng.shuffle(texts)
    return texts


README = """# text-demo: a synthetic review-sentiment dataset

**Synthetic.** Every text here was generated by `sample_data/make_text_demo.py` (Python
standard library only, `random.Random({seed})`); none comes from real users. Re-running the
script reproduces these files byte for byte.

Format: the same folder format as `../shared/data/<name>/`: `train.csv`, `test.csv` (UTF-8,
header row, standard quoting) with columns `text,label,topic,aspect`, and `labels.json`
(`{{"0": "negative", "1": "positive"}}`).

| split | rows | per label | per topic | per (topic, label, aspect) |
|---|---|---|---|---|
| train | {n_train} | {train_label} | {train_topic} | {train_cell} |
| test | {n_test} | {test_label} | {test_topic} | {test_cell} |

`transfer.txt`: {n_transfer} more reviews made the same way (a separate seed, {seed_transfer}),
one per line and without labels, none equal to a train or test text: unlabeled transfer
data for `dataset.transfer` (`examples/text-demo-transfer.yaml`).

- `label`: 0 = negative, 1 = positive (binary sentiment).
- `topic` (latent): food, electronics, media (films/books), travel. Labels are exactly
  balanced within each topic, so the label says nothing about the topic.
- `aspect` (latent): price, quality, service; balanced within each (topic, label).

How a text is built (see `make_text` in the script):
1. main clause by aspect: *price*: `<topic noun> <price phrase> [<topic price context>]`;
   *quality*: `<topic noun> <topic quality phrase>`; *service*: `<topic staff> at <topic place>
   <service phrase>`. Nouns, places, staff, price contexts and quality phrases are
   topic-specific; price and service phrases are shared by all topics.
2. lead-in: with probability 0.2 a concession of the opposite sentiment ("The wait was long,
   but ..."), otherwise a neutral opener (often empty).
   With probability {mixed_p} the review is *mixed*: a clause of the opposite sentiment about
   another aspect comes first ("The pasta was delicious, but the waiter ... treated us
   rudely."); the label follows the final verdict.
3. with probability 0.6 a closing sentence of the same sentiment ("Never again.").
4. annotation noise: in train only, the label of the first {noisy} texts of every
   (topic, label, aspect) cell is flipped (the same count each way, so balance holds); the
   test labels are clean.
5. duplicates are rejected; each cell's first {train_cell} distinct texts go to train and the
   next {test_cell} to test, so no text is in both splits. Rows are then shuffled.

Intended use: a fast, offline demo with a known hidden structure (`topic` inside each
sentiment class) for checking whether pseudo-subclasses recover it. It is far easier and far
more regular than real reviews; do not report results on it as results on real data.
"""


def write(out_dir: Path, seed: int = SEED) -> None:
    """Write the CSVs, labels.json and README.md (LF line endings, stable order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = generate(seed)
    for fname, rows in (("train.csv", train), ("test.csv", test)):
        with open(out_dir / fname, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label", "topic", "aspect"])
            w.writeheader()
            w.writerows(rows)
    transfer = generate_transfer({str(r["text"]) for r in train + test}, seed + 1)
    (out_dir / "transfer.txt").write_text("".join(t + "\n" for t in transfer), encoding="utf-8")
    labels = {str(k): v for k, v in LABELS.items()}
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
    n_topics, n_cells = len(TOPICS), len(TOPICS) * len(LABELS) * len(ASPECTS)
    readme = README.format(
        seed=seed,
        mixed_p=MIXED_P,
        noisy=NOISY_PER_CELL,
        n_train=len(train),
        n_test=len(test),
        train_label=len(train) // len(LABELS),
        test_label=len(test) // len(LABELS),
        train_topic=len(train) // n_topics,
        test_topic=len(test) // n_topics,
        train_cell=len(train) // n_cells,
        test_cell=len(test) // n_cells,
        n_transfer=len(transfer),
        seed_transfer=seed + 1,
    )
    (out_dir / "README.md").write_text(readme, encoding="utf-8")


if __name__ == "__main__":
    write(Path(__file__).resolve().parent / "text_demo")
