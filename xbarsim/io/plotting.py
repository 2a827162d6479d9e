"""Figures without pyplot: xbarsim never changes matplotlib's global backend.

Every plotting function of xbarsim draws on a :class:`matplotlib.figure.Figure` with its own
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (so ``savefig`` writes PNGs whatever
backend is active) instead of ``pyplot``, which would pick, or with ``matplotlib.use``, switch, the
process-wide backend and so break a Jupyter notebook's inline figures or a GUI session. The
figures are not registered with pyplot: they are freed when no longer referenced, and in a
notebook ``display(fig)`` shows one.
"""

from __future__ import annotations


def new_figure(**kwargs):
    """A ``Figure(**kwargs)`` drawn by an Agg canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


#: Figure file formats the figure-writing commands accept (``--format``).
FORMATS = ("png", "pdf", "svg")


def save_figure(fig, path, fmt: str = "png", **savefig_kwargs):
    """``fig.savefig(path)`` in ``fmt`` (png, pdf or svg), atomically (:mod:`xbarsim.io.atomic`):
    a reader never sees a half-written image. Returns the path."""
    from .atomic import atomic_write

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **savefig_kwargs),
                        mode=None, suffix=f".{fmt}")


def save_png(fig, path, **savefig_kwargs):
    """``fig.savefig(path)`` as a PNG, atomically. Returns the path."""
    return save_figure(fig, path, "png", **savefig_kwargs)


class Plots(list):
    """The paths of the PNG files written (a list, as plotting functions always returned) and,
    in ``figures``, the :class:`~matplotlib.figure.Figure` saved to each (``figures[i]`` is the
    figure of ``self[i]``)."""

    def __init__(self, paths=(), figures=()):
        super().__init__(paths)
        self.figures = list(figures)

    def add(self, path, figure) -> None:
        self.append(path)
        self.figures.append(figure)

    def figure(self, name):
        """The figure written to the path whose file name (or path) is ``name``."""
        for path, fig in zip(self, self.figures):
            if str(path) == str(name) or getattr(path, "name", None) == str(name):
                return fig
        raise KeyError(name)


__all__ = ["FORMATS", "Plots", "new_figure", "save_figure", "save_png"]
