"""Line charts via textual-plotext, downsampled to the widget's width.

plotext redraw cost grows with the points drawn (~64 ms at 2,000 points, ~0.5 s at 20,000
on 2 cores), while a terminal can show at most one point per column: so series are reduced
to about the widget's width (bucket means, keeping the last point) before drawing.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


def downsample(xs: Sequence[float], ys: Sequence[float], buckets: int) -> tuple[list[float], list[float]]:
    """At most ``buckets`` points: the mean of each run of consecutive points, plus the last point."""
    count = min(len(xs), len(ys))
    if buckets <= 0 or count <= buckets:
        return list(xs[:count]), list(ys[:count])
    out_x: list[float] = []
    out_y: list[float] = []
    size = count / buckets
    for bucket in range(buckets):
        start, stop = int(bucket * size), max(int((bucket + 1) * size), int(bucket * size) + 1)
        chunk_x, chunk_y = xs[start:stop], ys[start:stop]
        out_x.append(sum(chunk_x) / len(chunk_x))
        out_y.append(sum(chunk_y) / len(chunk_y))
    out_x[-1], out_y[-1] = xs[count - 1], ys[count - 1]
    return out_x, out_y


class SeriesChart(PlotextPlot):
    """A small multi-series line chart; ``set_series`` replaces the data and redraws once."""

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.points_drawn = 0

    def set_series(self, series: dict[str, tuple[Sequence[float], Sequence[float]]]) -> None:
        self.series = {name: (list(xs), list(ys)) for name, (xs, ys) in series.items()}
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        buckets = max(8, self.size.width - 10)
        drawn = 0
        for name, (xs, ys) in self.series.items():
            if not xs:
                continue
            sx, sy = downsample(xs, ys, buckets)
            plt.plot(sx, sy, label=name, marker="braille")
            drawn += len(sx)
        self.points_drawn = drawn
        self.refresh()


class BarChart(PlotextPlot):
    """Labelled bars (histograms, achievement spectra); one or more groups side by side."""

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.labels: list[str] = []
        self.groups: dict[str, list[float]] = {}

    def set_bars(self, labels: Sequence[str], groups: dict[str, Sequence[float]]) -> None:
        self.labels = [str(label) for label in labels]
        self.groups = {name: list(values) for name, values in groups.items()}
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        if self.labels and self.groups:
            if len(self.groups) == 1:
                (name, values), = self.groups.items()
                plt.bar(self.labels, values, label=name)
            else:
                plt.multiple_bar(self.labels, list(self.groups.values()), labels=list(self.groups))
            values = [value for group in self.groups.values() for value in group]
            if values and all(float(value).is_integer() for value in values):  # counts: whole-number ticks
                top = int(max(values))
                plt.yticks(integer_ticks(top))
                plt.ylim(0, max(1, top))
        self.refresh()

    def set_counts(self, xs: Sequence[int], counts: Sequence[int], *, x_title: str = "", y_title: str = "") -> None:
        """A histogram of counts over a numeric x: whole-number count ticks (never 0.5 episodes) and titled
        axes; x keeps its numeric order and gaps instead of being a row of category labels."""
        self.labels = [str(x) for x in xs]
        self.groups = {y_title or "count": [float(c) for c in counts]}
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        if xs:
            # every integer from 0 to the largest x, zeros included, so bars sit evenly on a numeric axis
            by_x = dict(zip(xs, counts))
            dense_x = list(range(0, max(xs) + 1))
            dense = [by_x.get(x, 0) for x in dense_x]
            plt.bar(dense_x, dense, width=0.6)
            top = max(dense)
            plt.yticks(integer_ticks(top))
            plt.ylim(0, max(1, top))
            plt.xticks(dense_x[::max(1, len(dense_x) // 12 + 1)])
        if x_title:
            plt.xlabel(x_title)
        if y_title:
            plt.ylabel(y_title)
        self.refresh()


def integer_ticks(top: int, most: int = 5) -> list[int]:
    """At most ``most`` + 1 whole-number ticks from 0 to at least ``top``."""
    step = max(1, -(-max(top, 1) // most))
    return list(range(0, max(top, 1) + step, step))
