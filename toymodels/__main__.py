"""``python -m toymodels --tasks markov ...``: train registered task(s) (see ``toymodels.cli``)."""

from toymodels.cli import train_main

if __name__ == "__main__":
    train_main()
