"""What the timeline pictures write alike (tests/soak/timeline.py, tests/bench/timeline.py):
the document's frame, escaping, the x axis's ticks. Pure text, no dependency, so that a picture
is written where the lab runs, without a plotting library; the pictures' tests check it
(tests/unit/test_soak_timeline.py, tests/unit/test_timeline.py)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

__all__ = ["document", "escape", "header", "quoteattr", "tick", "tick_label"]


def header(width: int, height: int, view_box: bool = False, head: tuple[str, ...] = ()) -> list[str]:
    """The opening elements: <svg> (sans-serif, 11 px; with a viewBox when asked, so that it
    scales), `head` (a <title>, a <style>), then a white background."""
    box = f'viewBox="0 0 {width} {height}" ' if view_box else ""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'{box}font-family="sans-serif" font-size="11">', *head,
            f'<rect width="{width}" height="{height}" fill="white"/>']


def document(parts: list[str]) -> str:
    """The SVG text of those elements, one a line, closed."""
    return "\n".join([*parts, "</svg>"]) + "\n"


def tick(x: float, y1: float, y2: float, stroke: str) -> str:
    """An upright line at `x` from `y1` to `y2`: an axis's tick, or a grid line."""
    return f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y2}" stroke="{stroke}"/>'


def tick_label(x: float, y: float, text: str, fill: str | None = None) -> str:
    """A tick's label, centred under `x`."""
    colour = f' fill="{fill}"' if fill else ""
    return f'<text x="{x:.1f}" y="{y}" text-anchor="middle"{colour}>{escape(text)}</text>'
