"""Execute every notebook with papermill and build the HTML book (Jupyter Book 1).

Usage::

    python tools/build_book.py --profile cpu            # what `make book` runs
    python tools/build_book.py --profile smoke --out /tmp/b   # what the notebook test runs
    python tools/build_book.py --jobs 1                     # one notebook at a time

Steps: stage ``_config.yml``, ``_toc.yml`` and ``book/`` into ``OUT/src``; draw the generated
figures; execute each notebook of ``notebooks/`` with papermill (parameter ``profile``) into
``OUT/src/notebooks``, the first alone and the others two at a time (``--jobs``); write
Sphinx's ``conf.py`` with ``jupyter-book config sphinx``; run ``sphinx-build -W -n
--keep-going`` into ``OUT/html``. Source notebooks are never modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_sources(src: Path) -> None:
    """Copy the book's static sources into a clean staging folder."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_generated"))
    (src / "notebooks").mkdir()


def draw_generated(src: Path) -> None:
    """Figures drawn by code for the markdown chapters."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "diagrams.py"),
                    str(src / "book" / "_generated")], check=True)


KERNEL_START_ATTEMPTS = 3
KERNEL_DIED_AT_START = "Kernel died before replying to kernel_info"


def execute_notebook(notebook: Path, src: Path, profile: str) -> tuple[str, float]:
    """Run one source notebook through papermill into the staging folder.

    A kernel that dies before its first reply ran no cell: kernels started side by side over
    TCP can race for a port (jupyter_client picks free ports, then the kernel binds them), so
    such a start is tried again, up to ``KERNEL_START_ATTEMPTS`` times. Any other error, or a
    kernel that dies later, fails the build.
    """
    import papermill

    start = time.perf_counter()
    print(f"[book] executing {notebook.name} (profile={profile})", flush=True)
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            papermill.execute_notebook(
                str(notebook),
                str(src / "notebooks" / notebook.name),
                parameters={"profile": profile},
                kernel_name="python3",
                cwd=str(ROOT / "notebooks"),
                progress_bar=False,
                request_save_on_cell_execute=False,
            )
            break
        except RuntimeError as error:
            if KERNEL_DIED_AT_START not in str(error) or attempt == KERNEL_START_ATTEMPTS:
                raise
            print(f"[book] {notebook.name}: the kernel died at start (attempt {attempt}); "
                  "starting it again", flush=True)
    fold_parameters(src / "notebooks" / notebook.name)
    seconds = time.perf_counter() - start
    print(f"[book] {notebook.name}: {seconds:.0f} s", flush=True)
    return notebook.name, seconds


def execute_notebooks(src: Path, profile: str, only: list[str] | None,
                      jobs: int = 1) -> dict[str, float]:
    """Run the notebooks, the first alone and the rest in ``jobs`` processes.

    The first notebook builds the data caches (features, sets) that every other notebook
    reads, so it runs before them; the others share nothing but atomically written caches and
    records, and a recorded run computes on a fixed number of threads, so running them side by
    side changes no number, only the wall time on a machine with idle cores.
    """
    notebooks = [nb for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
                 if not only or nb.stem in only]
    if not notebooks:
        return {}
    timings = dict([execute_notebook(notebooks[0], src, profile)])
    rest = notebooks[1:]
    if jobs <= 1 or len(rest) <= 1:
        for notebook in rest:
            timings.update([execute_notebook(notebook, src, profile)])
        return timings
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a clean interpreter per worker
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(execute_notebook, nb, src, profile) for nb in rest]
        for future in futures:
            timings.update([future.result()])
    return {nb.name: timings[nb.name] for nb in notebooks}


def fold_parameters(path: Path) -> None:
    """Show a notebook's parameters once, as a short box under its title.

    The parameters cell (the defaults) and the cell papermill injects (the values used) are
    removed from the page, and one note lists the values this page was executed with.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    values: dict[str, str] = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            for line in cell.source.splitlines():
                name, sep, value = line.partition("=")
                if sep and not line.lstrip().startswith("#"):
                    values[name.strip()] = value.split("#")[0].strip()
            cell.metadata["tags"] = [*tags, "remove-cell"]
    if values:
        listing = ", ".join(f"`{k} = {v}`" for k, v in values.items())
        note = nbformat.v4.new_markdown_cell(
            f"```{{note}}\nThis page was executed with {listing}. Re-run it with other values "
            "through papermill (see *How to re-run*).\n```")
        nb.cells.insert(1, note)
    nbformat.write(nb, path)


def build_html(src: Path, html: Path) -> None:
    """Generate conf.py from the Jupyter Book config and run Sphinx with warnings as errors."""
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "jupyter-book"), "config", "sphinx", str(src)], check=True)
    # `jupyter-book build` puts local extensions on sys.path itself; plain sphinx-build does not.
    conf = src / "conf.py"
    conf.write_text("import os, sys\nsys.path.insert(0, os.path.abspath('book/_ext'))\n"
                    + conf.read_text())
    if html.exists():
        shutil.rmtree(html)
    subprocess.run(
        [
            str(bin_dir / "sphinx-build"),
            "-W",
            "-n",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(src),
            str(html),
        ],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="smoke, cpu or paper (default cpu)")
    parser.add_argument("--out", default=str(ROOT / "_build"), help="build folder (default _build)")
    parser.add_argument("--only", default="", help="comma-separated notebook stems to execute")
    parser.add_argument("--no-html", action="store_true", help="execute notebooks only")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="notebooks executed side by side after the first (default: "
                             "2, or 1 on a one-core machine)")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Hermetic runs: matplotlib and Jupyter write their state inside the build folder.
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".mpl"))
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", str(out / ".jupyter-runtime"))
    # Progress bars are for people at a terminal; in the rendered book they are noise.
    os.environ.setdefault("TQDM_DISABLE", "1")
    src = out / "src"
    start = time.perf_counter()
    stage_sources(src)
    draw_generated(src)
    timings = execute_notebooks(src, args.profile, [s for s in args.only.split(",") if s] or None,
                                args.jobs)
    if not args.no_html:
        build_html(src, out / "html")
        print(f"[book] HTML in {out / 'html' / 'index.html'}")
    total = time.perf_counter() - start
    print(
        "[book] "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {total:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
