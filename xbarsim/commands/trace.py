"""``xbarsim trace plot DIR``: raster and spike-count histograms from a trace directory."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("trace", help="work with spike traces written by `xbarsim run --trace`")
    tsub = p.add_subparsers(dest="trace_command", metavar="ACTION")
    tsub.required = True
    plot = tsub.add_parser("plot", help="draw a raster and per-layer spike-count histograms (PNG)")
    plot.add_argument("dir", help="trace directory")
    plot.add_argument("--out", help="where to write the PNGs (default: the trace directory)")
    plot.add_argument("--images", type=int, default=4,
                      help="images shown in the raster, one row each (default 4)")
    plot.add_argument("--format", choices=("png", "pdf", "svg"), default="png",
                      help="figure file format (default png)")
    plot.set_defaults(func=run_plot)


def run_plot(args) -> int:
    from ..engine.trace import plot_trace
    from ..io.paths import check_out_dir

    if args.out:
        check_out_dir(args.out, "--out")

    for path in plot_trace(args.dir, args.out, max_images=args.images, fmt=args.format):
        print(f"wrote {path}")
    return 0
