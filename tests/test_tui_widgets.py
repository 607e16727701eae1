"""Console widgets that can be checked without running the app."""

from __future__ import annotations

from crafter_tui.tui.widgets.charts import downsample
from crafter_tui.tui.widgets.episode import render_view


def test_downsample_keeps_the_ends_and_the_bucket_count():
    xs = list(range(1000))
    ys = [float(x) for x in xs]
    sx, sy = downsample(xs, ys, 50)
    assert len(sx) == 50 and sx[-1] == 999 and sy[-1] == 999.0
    assert sy[0] < sy[25] < sy[-1]
    assert downsample(xs[:10], ys[:10], 50) == (xs[:10], ys[:10])


def test_the_map_is_drawn_from_the_view_symbols():
    view = "." * 31 + "@" + "T" * 31
    text = render_view(view)
    rows = text.plain.split("\n")
    assert len(rows) == 7 and all(len(row) == 18 for row in rows)  # 9 cells of 2 columns
    assert "@@" in rows[3] and "♣♣" in rows[6]


def test_the_map_scales_to_its_room():
    view = "." * 31 + "@" + "T" * 31
    rows = render_view(view, 3).plain.split("\n")
    assert len(rows) == 21 and all(len(row) == 54 for row in rows)  # 9 cells of 6 columns, 7 cells of 3 rows
    assert "@@@@@@" in rows[9] and rows[9] == rows[10] == rows[11]


def test_the_map_legend_names_what_the_view_shows():
    from crafter_tui.tui.widgets.episode import map_legend

    legend = map_legend("." * 31 + "@" + "T" * 31, 80).plain
    assert "grass" in legend and "player" in legend and "tree" in legend and "water" not in legend
