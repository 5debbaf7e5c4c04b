"""Plumbing of the chapters: stored results from ``book/data``, tables printed as HTML, and the checks chapter 5
runs on its stored sweeps. Nothing here computes a result; it reads, tabulates and compares what was stored.
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

#: where the chapters (run from book/) find their stored results
DATA = Path("data")
PROFILES = ("quick", "full")


def load_result(filename: str, data: Path | str = DATA) -> dict:
    """One stored result file of ``data`` (its rows and provenance)."""
    path = Path(data) / filename
    if not path.is_file():
        raise ValueError(f"filename: no stored result {path}")
    return json.loads(path.read_text())


def stored(name: str, data: Path | str = DATA) -> dict | None:
    """The stored result ``<name>.json`` of ``data``, or None where it was not produced."""
    path = Path(data) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load(name: str, data: Path | str = DATA) -> dict:
    """The stored results of figure ``name``, ``{profile: result}`` for the profiles that were produced
    (``<name>-quick.json``, ``<name>-full.json``)."""
    results = {profile: load_result(f"{name}-{profile}.json", data) for profile in PROFILES
               if (Path(data) / f"{name}-{profile}.json").is_file()}
    if not results:
        raise ValueError(f"name: no stored result {name}-quick.json or {name}-full.json in {data}")
    return results


def glue(name: str, value, digits: int | None = None) -> None:
    """Glue a measured value for the chapter's text (MyST-NB: ``{glue:text}`name:.2f``` renders it), rounded to
    ``digits`` decimals first, so that a rounding residue of the processor never reaches the stored record; no
    visible output. ``value``: a finite number or a string; ``digits`` None keeps a number as it is."""
    from myst_nb import glue as myst_glue

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][\w-]*", name):
        raise ValueError(f"name must be a word of letters, digits, '_' and '-' starting with a letter; got {name!r}")
    if digits is not None and (isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 12):
        raise ValueError(f"digits must be None or an integer in [0, 12]; got {digits!r}")
    if not isinstance(value, str):
        if isinstance(value, bool) or not hasattr(value, "__float__") or not math.isfinite(float(value)):
            raise ValueError(f"value of {name!r} must be a finite number or a string; got {value!r}")
        value = value.item() if hasattr(value, "item") else value  # numpy and torch scalars glue as Python numbers
        if digits is not None:
            value = round(float(value), digits) if digits else int(round(float(value)))
    myst_glue(name, value, display=False)


def model_name(result: dict) -> str:
    """The model a stored transformer result trained, from its protocol: the authors' initialisation and no EOS
    residual unless the protocol names another (a protocol that names neither trained ours, with the residual)."""
    protocol = result["provenance"]["config"]["protocol"]
    init, residual = protocol.get("init", "ours"), protocol.get("eos_residual", True)
    return f"{init} init, {'with' if residual else 'no'} EOS residual"


class Table:
    """A table printed once: as HTML in a notebook and in the book (fits the column, numbers right-aligned), as
    aligned text elsewhere. ``cells`` are strings or numbers; ``formats`` maps a column to a format spec."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence], formats: dict[str, str] | None = None,
                 caption: str = ""):
        columns = list(columns)
        formats = formats or {}
        unknown = set(formats) - set(columns)
        if unknown:
            raise ValueError(f"formats: {sorted(unknown)} are not columns (columns: {columns})")
        bad = [row for row in rows if len(row) != len(columns)]
        if bad:
            raise ValueError(f"rows: each row needs {len(columns)} cells, got {bad[0]!r}")
        self.columns, self.caption = columns, caption
        # numbers (and "-" for a missing one) right-aligned, text left-aligned, cell by cell
        self.numeric = [[_is_number(cell) or cell is None for cell in row] for row in rows]
        self.head_numeric = [any(flags[i] for flags in self.numeric) for i in range(len(columns))]
        self.rows = [[_format(cell, formats.get(column, "")) for cell, column in zip(row, columns)] for row in rows]

    def _repr_html_(self) -> str:
        def cell(tag, text, numeric):
            return f'<{tag} class="{"fx-num" if numeric else "fx-text"}">{html.escape(text)}</{tag}>'

        head = "".join(cell("th", c, num) for c, num in zip(self.columns, self.head_numeric))
        body = "".join("<tr>" + "".join(cell("td", c, num) for c, num in zip(row, flags)) + "</tr>"
                       for row, flags in zip(self.rows, self.numeric))
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<div class="fx-table-box"><table class="fx-table">{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(row[i]) for row in self.rows)) for i, c in enumerate(self.columns)]

        def line(cells, flags):
            return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, flags)).rstrip()

        lines = ([self.caption] if self.caption else []) + [line(self.columns, self.head_numeric)]
        lines += [line(row, flags) for row, flags in zip(self.rows, self.numeric)]
        return "\n".join(lines)


def _is_number(cell) -> bool:
    return isinstance(cell, (int, float)) and not isinstance(cell, bool)


def _format(cell, spec: str) -> str:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return "-"
    return format(cell, spec) if spec and _is_number(cell) else str(cell)


# ---- chapter 5: the stored sweeps at the paper's protocol ----------------------------------------------------

def cpu_subset_table(cpu: dict, quick: dict) -> Table:
    """Each size of the CPU subset of Figure 4 (left) at the paper's protocol, beside the quick capacity where the
    quick profile has the same size and split."""
    quick_facts = {(r["d"], r["alpha"], r["beta"]): r["facts"] for r in quick["rows"]}
    rows = [[r["d"], r["alpha"], r["beta"], r["params"], r["facts"], quick_facts.get((r["d"], r["alpha"], r["beta"])),
             r["facts"] / r["params"], r["facts_exact"]]
            for r in sorted(cpu["rows"], key=lambda r: (r["d"], -r["alpha"]))]
    return Table(["d", "alpha", "beta", "P", "S R (paper)", "S R (quick)", "facts / P", "facts exact"], rows,
                 formats={"alpha": "g", "beta": "g", "facts / P": ".3f", "facts exact": ".3f"})


def rule_capacities(stopping: dict, column: str) -> dict:
    """Per model size (d, d_h, m) of a stopping-rule replay, the largest scale n that some learning rate stored,
    by the verdicts in ``column`` (0 where none did)."""
    sizes = sorted({(r["d"], r["d_h"], r["m"]) for r in stopping["rows"]})
    best = dict.fromkeys(sizes, 0)
    for r in stopping["rows"]:
        if r[column]:
            size = (r["d"], r["d_h"], r["m"])
            best[size] = max(best[size], r["n"])
    return best


def stopping_table(stopping: dict) -> Table:
    """How each stopping rule of a replay agrees with training to the whole budget: verdicts, runs stopped, mean
    steps per run, and the sizes whose capacity it leaves unchanged."""
    full_budget = rule_capacities(stopping, "full_budget_reached")
    rows = []
    for name, verdict in stopping["rules"].items():
        mine = rule_capacities(stopping, f"rule_reached[{name}]")
        same = sum(mine[size] == full_budget[size] for size in full_budget)
        label = "patience (the protocol's rule)" if name == "full" else re.sub(r",[^)]*\)", ")", name)
        rows.append([label, f"{verdict['agree']} of {stopping['runs']}", verdict["agreement"],
                     verdict["stopped_learners"], verdict["mean_steps"], f"{same} of {len(full_budget)}"])
    return Table(["rule", "verdicts agree", "share", "learners stopped", "steps a run", "capacity unchanged"], rows,
                 formats={"share": ".1%"})


# ---- chapter 5: the capacity sweeps' fits, and the authors' model choices measured -----------------------------

def slopes_with_intervals(rows: Sequence[dict]) -> dict | None:
    """Slopes of log S R and of log(S R ln S R) against log P, across all sizes ("all") and with one intercept per
    (alpha, beta) split ("within"), each with a 95 % bootstrap interval over the (alpha, beta, seed) families
    (``searches.bootstrap_fit``); None with fewer than three families."""
    from .searches import bootstrap_fit

    rows = [r for r in rows if r["facts"] > 1]
    units = [(r["alpha"], r["beta"], r["seed"]) for r in rows]
    if len(set(units)) < 3:
        return None
    P, facts = [r["params"] for r in rows], [r["facts"] for r in rows]
    splits = [(r["alpha"], r["beta"]) for r in rows]
    within = len(set(P)) > len(set(splits))
    return {(response, how): bootstrap_fit(P, facts, units, splits if how == "within" else None, response)
            for response in ("facts", "facts_log") for how in ("all", "within") if how == "all" or within}


#: a sweep's slopes are fitted once it covers this many values of d: over fewer, a slope is one step between sizes
MIN_DS_FOR_SLOPES = 3


def sweep_fits(rows: Sequence[dict]) -> dict | None:
    """``slopes_with_intervals`` of a stored sweep's rows once they cover ``MIN_DS_FOR_SLOPES`` values of d; None
    before (the one rule behind chapter 5's table of slopes, its text and its summary)."""
    return slopes_with_intervals(rows) if len({r["d"] for r in rows}) >= MIN_DS_FOR_SLOPES else None


LAWS = {"facts": "S R = c P", "facts_log": "S R ln(S R) = c P"}


def interval_words(fit: dict) -> str:
    """A fitted slope with its interval, as the chapter prints it: "1.17 [1.00, 1.33]"."""
    return f"{fit['slope']:.2f} [{fit['low']:.2f}, {fit['high']:.2f}]"


def law_verdict(fits: dict, how: str = "within") -> str:
    """Which of the two laws the slopes' intervals admit (slope 1 inside the interval), in words."""
    inside = {response: fits[response, how]["low"] <= 1 <= fits[response, how]["high"] for response in LAWS}
    if all(inside.values()):
        return "both laws: the intervals of both slopes contain 1, and these sizes do not tell them apart"
    if not any(inside.values()):
        return "neither law: no interval contains 1"
    admitted = next(response for response, ok in inside.items() if ok)
    other = next(response for response in LAWS if response != admitted)
    return f"{LAWS[admitted]}: its slope's interval contains 1, that of {LAWS[other]} does not"


def model_label(row: dict) -> str:
    """The model choices of a stored capacity row: its embeddings and its evaluation prompts."""
    embeddings = "unit-norm" if row.get("embeddings", "unit") == "unit" else "N(0, 1/d)"
    return f"{embeddings} embeddings, {row.get('eval_set', 'fresh')} evaluation prompts"


def paired_capacities(results: Sequence[dict]) -> dict:
    """(d, alpha, beta, seed) -> {model label: (P, facts)} over the rows of stored capacity results: the same
    sizes, tables and data streams trained under different model choices, side by side."""
    out: dict = {}
    for result in results:
        for r in result["rows"]:
            out.setdefault((r["d"], r["alpha"], r["beta"], r["seed"]), {})[model_label(r)] = (r["params"], r["facts"])
    return out


def release_comparison(results: Sequence[dict], default: str, others: dict[str, str]) -> tuple[Table, dict]:
    """The capacities of the sizes measured with the ``default`` model and every model of ``others`` (model label
    of ``model_label`` -> column name), as a table, and for each other model its facts against the default's: the
    median ratio, and how many sizes store more, the same, or fewer."""
    paired = {size: models for size, models in paired_capacities(results).items()
              if default in models and all(m in models for m in others)}
    rows, ratios = [], {m: [] for m in others}
    for (d, alpha, beta, seed), models in sorted(paired.items()):
        P, base = models[default]
        rows.append([d, alpha, beta, seed, P, base] + [models[m][1] for m in others])
        for m in others:
            ratios[m].append(models[m][1] / base if base else math.inf)
    summary = {}
    for m, values in ratios.items():
        ordered = sorted(values)
        middle = (ordered[len(ordered) // 2] + ordered[(len(ordered) - 1) // 2]) / 2 if ordered else math.nan
        summary[others[m]] = {"sizes": len(values), "more": sum(v > 1 for v in values),
                              "same": sum(v == 1 for v in values), "fewer": sum(v < 1 for v in values),
                              "median_ratio": middle}
    return Table(["d", "alpha", "beta", "seed", "P", "default", *others.values()], rows,
                 formats={"alpha": "g", "beta": "g"}, caption=f"facts S R stored at 99 %; default: {default}"), summary


def rounding_label(row: dict) -> str:
    """How a stored capacity row (or a stored protocol) rounded d_h = alpha d / H and m = beta d: down (the
    release) or half up. Its "rounding" where it names one; otherwise what the code of its time did: down once
    protocols named their embeddings, half up before."""
    from .scaling_figures import _rounding  # the rule the sweeps round by; imported here, it needs torch

    rounding = _rounding({**row, "protocol": row})
    return "d_h and m rounded down" if rounding == "floor" else "d_h and m rounded half up"


def seed_median(rows: Sequence[dict], key) -> tuple[float, float, float]:
    """The median over sizes of ``key(row)`` for each seed, then (the median over seeds, the lowest seed's, the
    highest seed's): one seed's noise does not weigh like a size. With one seed, its median three times."""
    seeds = sorted({r["seed"] for r in rows})
    per_seed = sorted(_median([key(r) for r in rows if r["seed"] == s]) for s in seeds)
    return _median(per_seed), per_seed[0], per_seed[-1]


def seed_median_interval(rows: Sequence[dict], key, level: float = 0.95) -> tuple[float, float]:
    """A bootstrap interval of ``seed_median``'s middle value: the rows resampled by (alpha, beta, seed) family,
    whole families at a time (``searches.bootstrap_interval``, as the slopes' intervals)."""
    from .searches import bootstrap_interval

    units = [(r["alpha"], r["beta"], r["seed"]) for r in rows]
    return bootstrap_interval(lambda pick: seed_median([rows[i] for i in pick], key)[0], units, level=level)


def seed_summary(rows: Sequence[dict], key) -> dict:
    """``seed_median`` of ``key(row)`` with its bootstrap interval (``seed_median_interval``; None with one seed):
    {"median", "seed_low", "seed_high", "low", "high", "seeds", "families"}."""
    middle, seed_low, seed_high = seed_median(rows, key)
    seeds = len({r["seed"] for r in rows})
    low, high = seed_median_interval(rows, key) if seeds > 1 else (None, None)
    return {"median": middle, "seed_low": seed_low, "seed_high": seed_high, "low": low, "high": high,
            "seeds": seeds, "families": len({(r["alpha"], r["beta"], r["seed"]) for r in rows})}


def _spread_words(summary: dict) -> str:
    """A ``seed_summary`` in words: the median over seeds, the range between seeds and the bootstrap interval."""
    if summary["seeds"] == 1:
        return f"{summary['median']:.3f} (one seed)"
    return (f"{summary['median']:.3f} (seeds: {summary['seed_low']:.3f} to {summary['seed_high']:.3f}; 95\u00a0% "
            f"bootstrap over {summary['families']} (alpha, beta, seed) families: [{summary['low']:.3f}, "
            f"{summary['high']:.3f}])")


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return (ordered[len(ordered) // 2] + ordered[(len(ordered) - 1) // 2]) / 2


def facts_per_param_by_d(rows: Sequence[dict]) -> dict[int, float]:
    """d -> the median of facts / params over the stored sizes and seeds at that d, in increasing d."""
    return {d: _median([r["facts"] / r["params"] for r in rows if r["d"] == d]) for d in sorted({r["d"] for r in rows})}


def trend(values: dict) -> str:
    """In words, how the values of ``values`` (in the order of its keys) move: rising, falling, flat or neither."""
    v = list(values.values())
    steps = [b - a for a, b in zip(v, v[1:])]
    if not steps or all(step == 0 for step in steps):
        return "the same at every d"
    if all(step >= 0 for step in steps):
        return "rising with d"
    if all(step <= 0 for step in steps):
        return "falling with d"
    return "not monotone in d"


_FIT_HERE = object()  # release_subset_report's default: fit the slopes itself


def release_subset_report(result: dict | None, name: str, fits=_FIT_HERE) -> tuple[str, dict | None]:
    """Markdown that reports a stored capacity sweep at the paper's protocol on the release's model (``result``,
    as ``stored(name)`` gives it), every number read from it, and those numbers: the values of d covered, facts and
    bits per parameter (``seed_summary``: median over sizes, per seed, then over seeds, with the range between
    seeds and a bootstrap interval), facts per parameter by d, and, from ``MIN_DS_FOR_SLOPES`` values of d on, the
    slopes with their intervals and the law they admit: ``fits``, ``sweep_fits`` of its rows where the caller has
    them (a bootstrap is not cheap), else fitted here. Returns (markdown, {"facts", "bits", "by_d", "fits"});
    ``result`` None: a text that says the sweep is not stored, and None."""
    if result is None:
        return (f"The subset on the release's model (`{name}`: N(0, 1/d) embeddings, d_h and m rounded down, "
                "three seeds) is not stored yet; this section relies on the subset with unit-norm embeddings above."
                ), None
    rows = result["rows"]
    if not rows:
        raise ValueError(f"result: the stored sweep {name} has no rows")
    ds = sorted({r["d"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    splits = sorted({(r["alpha"], r["beta"]) for r in rows}, reverse=True)
    numbers = {"facts": seed_summary(rows, lambda r: r["facts"] / r["params"]),
               "bits": seed_summary(rows, lambda r: r["bits"] / r["params"]),
               "by_d": facts_per_param_by_d(rows), "fits": sweep_fits(rows) if fits is _FIT_HERE else fits}
    by_d, fits = numbers["by_d"], numbers["fits"]
    lines = [f"The subset on the release's model (`{name}`: {model_label(rows[0])}, {rounding_label(rows[0])}) "
             f"covers d = {', '.join(map(str, ds))}, the splits "
             f"{', '.join(f'({a:g}, {b:g})' for a, b in splits)} and seeds {', '.join(map(str, seeds))} "
             f"({len(rows)} sizes and seeds).",
             f"- facts per parameter, median over the sizes: {_spread_words(numbers['facts'])}",
             f"- bits per parameter, median over the sizes: {_spread_words(numbers['bits'])}",
             "- facts per parameter by d, median over splits and seeds: "
             + ", ".join(f"{d}: {value:.3f}" for d, value in by_d.items()) + f" ({trend(by_d)})"]
    if fits is None:
        lines.append(f"- slopes: not fitted before the sweep covers {MIN_DS_FOR_SLOPES} values of d ({len(ds)} so far)")
        return "\n".join(lines), numbers
    for response in LAWS:
        for how in ("all", "within"):
            fit = fits.get((response, how))
            if fit:
                lines.append(f"- slope of {LAWS[response].split(' = ')[0]} against P, "
                             f"{'across splits' if how == 'all' else 'within splits'}: {interval_words(fit)} "
                             f"(95\u00a0% bootstrap over {fit['units']} "
                             "(alpha, beta, seed) families)")
    if all((response, "within") in fits for response in LAWS):
        lines.append(f"- the laws the intervals within splits admit: {law_verdict(fits)}")
    return "\n".join(lines), numbers


def d_ranges(rows: Sequence[dict]) -> list[tuple[int, int]]:
    """The ranges of d a sweep's slopes are refitted over: from its smallest d up to each of its values of d, from
    the ``MIN_DS_FOR_SLOPES``-th on, then all but the smallest d where that still spans ``MIN_DS_FOR_SLOPES``."""
    ds = sorted({r["d"] for r in rows})
    ranges = [(ds[0], d_max) for d_max in ds[MIN_DS_FOR_SLOPES - 1:]]
    return ranges + ([(ds[1], ds[-1])] if len(ds) > MIN_DS_FOR_SLOPES else [])


def slopes_by_d_range(rows: Sequence[dict], fits: dict | None = None) -> tuple[Table, dict]:
    """The slopes of a stored sweep with their intervals (``sweep_fits``) refitted over the sizes in each range of
    ``d_ranges``: where they move as larger models join, and without the smallest. ``fits``, the fits over all the
    rows where the caller has them. Returns the table and {(d_min, d_max): fits}."""
    table, by_range = [], {}
    for low, high in d_ranges(rows):
        mine = [r for r in rows if low <= r["d"] <= high]
        whole = fits is not None and len(mine) == len(rows)
        by_range[low, high] = fit = fits if whole else sweep_fits(mine)
        cells = [fit.get((response, how)) for response in LAWS for how in ("all", "within")]
        table.append([f"{low}\u2013{high}", len(mine)] + [interval_words(c) if c else None for c in cells])
    columns = ["d", "sizes", "S R: across", "S R: within", "S R ln(S R): across", "S R ln(S R): within"]
    return Table(columns, table, caption="slopes refitted over the sizes in each range of d, 95 % bootstrap "
                                         "intervals over the (alpha, beta, seed) families"), by_range

