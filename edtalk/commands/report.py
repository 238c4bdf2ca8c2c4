"""`edtalk report`: HTML and PDF comparison report of every results.json under a folder, and the
per-sample table as CSV (or Parquet) for your own analysis.

    edtalk report results/ --html --pdf
    edtalk report edtalk-a.json copy-source.json --html --pdf   (real protocols: the paper's Table 1 layout)
    edtalk report results/ --html --out site/ablations.html
    edtalk report results/ --csv per_sample.csv      (only the table; add --html/--pdf for those too)
"""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="render an HTML/PDF report of the results.json files under DIR",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("dir", metavar="RESULTS", nargs="+",
                   help="results.json files, or a folder searched recursively for them; results of the real "
                        "protocols (mead-edtalk, hdtf-edtalk) get the Table-1 layout (reports.table1)")
    p.add_argument("--html", action="store_true", help="write the self-contained HTML report")
    p.add_argument("--pdf", action="store_true", help="write the PDF report")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="a .html or .pdf file (the other output gets the same stem) or a folder "
                        "(default: DIR/report.html, DIR/report.pdf)")
    p.add_argument("--pdf-engine", default="auto", choices=("auto", "weasyprint", "matplotlib"),
                   help="auto: WeasyPrint, or the matplotlib fallback where it cannot run (default auto)")
    p.add_argument("--csv", default=None, metavar="PATH",
                   help="write the per-sample table (one row per run and case, one column per metric) as CSV; "
                        "a PATH ending in .parquet writes Parquet (needs pyarrow)")
    p.set_defaults(func=run)


def run(args) -> int:
    from reports.table1 import gather_runs, is_table1, render_table1

    if is_table1(gather_runs(args.dir)):
        if args.csv is not None:
            from reports.results_table import load_results, write_table

            print(f"table: {write_table(load_results(args.dir), args.csv)}")
            if not args.html and not args.pdf:
                return 0
        both = not args.html and not args.pdf
        out = render_table1(args.dir, html=args.html or both, pdf=args.pdf or both, out=args.out)
        for kind in ("html", "pdf"):
            if out[kind] is not None:
                print(f"{kind}: {out[kind]}")
        return 0
    if len(args.dir) != 1:
        from metrics.errors import InputError

        raise InputError("the sweep report takes one folder of results; several results files make a Table-1 "
                         "report only when they score a real protocol (mead-edtalk, hdtf-edtalk)")
    args.dir = args.dir[0]
    if args.csv is not None:
        from reports.results_table import load_results, write_table

        df = load_results(args.dir)
        path = write_table(df, args.csv)
        print(f"table: {path} ({len(df)} rows, {df['run'].nunique()} runs, metrics {', '.join(df.attrs['metrics'])})")
        if not args.html and not args.pdf:
            return 0
    from reports import render_report

    both = not args.html and not args.pdf  # neither flag: write both
    out = render_report(args.dir, html=args.html or both, pdf=args.pdf or both, out=args.out,
                        pdf_engine=args.pdf_engine)
    if out["html"] is not None:
        print(f"html: {out['html']}")
    if out["pdf"] is not None:
        print(f"pdf:  {out['pdf']} ({out['pdf_engine']})")
    return 0
