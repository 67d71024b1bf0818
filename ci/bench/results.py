"""Reads a benchmark's results file: lines of `label<TAB>figure<TAB>value`, one per run.

load(path) returns (values, labels, med): values[figure][label] is the list of runs, labels keep
their first-seen order, med(figure, label) is the median of those runs."""
import statistics


def load(path):
    values, labels = {}, []
    for line in open(path):
        label, figure, value = line.rstrip("\n").split("\t")
        if label not in labels:
            labels.append(label)
        values.setdefault(figure, {}).setdefault(label, []).append(float(value))
    return values, labels, lambda figure, label: statistics.median(values[figure][label])
