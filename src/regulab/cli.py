"""The ``regulab`` command: a thin layer that parses arguments and calls the library.

Building the parser imports nothing heavy (each command imports the library inside its function),
so ``regulab --help``, every subcommand's ``--help`` and ``regulab --version`` load no torch.

Exit codes: 0 done; 2 bad input (config, data, arguments, checkpoint), with one line on
stderr naming the field, the value and what is allowed, and nothing written; 3 training
diverged (NaN/Inf); 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from collections.abc import Sequence

from regulab.errors import ConfigError, DivergedError, OutputError, RegulabInputError, RunFailed
from regulab.version import __version__

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line, exit code 2
        self.exit(2, f"regulab: error: {message} (see 'regulab --help')\n")


def _summary(run) -> str:
    r = run.results
    score = "acc" if "train_acc" in r else "r2"
    parts = [f"{k}={r[k]:.4f}" for k in (f"train_{score}", f"val_{score}", f"test_{score}") if k in r]
    watched = f" monitor={r['monitor']}" if r.get("monitor") else ""    # None: early stopping off
    return (f"{' '.join(parts)} epochs={r['epochs_run']} best_epoch={r['best_epoch']}{watched} "
            f"diagnosis={r['diagnosis'] or 'none (no validation split)'}\nresults: {run.run_dir / 'results.json'}")


def _train(args) -> int:
    from regulab.config.core import load_config
    from regulab.engine.optimizers import no_dynamo_import
    from regulab.runs.run import train
    no_dynamo_import()      # a second of start-up this command never needs
    sets = args.set + ([f"train.nproc={args.nproc}"] if args.nproc is not None else [])
    cfg = load_config(args.config, sets)
    progress = False if args.quiet else None
    if args.members is not None:
        from regulab.runs.ensemble import train_ensemble
        ens = train_ensemble(cfg, args.members, bagging=args.bagging, out=args.out, db=args.db,
                             progress=progress)
        r = ens.results
        print(" ".join(f"{k}={r[k]:.4f}" for k in ("val_acc", "test_acc", "member_test_acc_mean",
                                                    "member_test_acc_std") if k in r))
        print(f"results: {ens.run_dir / 'ensemble.json'}")
        return 0
    if args.bagging:
        raise ConfigError(f"--bagging needs --members K (K >= 2); got --members {args.members}")
    run = train(cfg, out=args.out, db=args.db, progress=progress)
    if os.environ.get("RANK", "0") == "0":     # under torchrun: once, by rank 0
        print(_summary(run))
    return 0


def _predict(args) -> int:
    from regulab.config.core import load_config
    from regulab.runs.predict import check_output, load_model, predict, read_inputs, write_predictions
    check_output(args.out)      # before any work
    model = load_model(args.run_dir)
    data = load_config(f"{args.run_dir}/config.toml").data
    X, names = read_inputs(args.input, tuple(model.preprocess.shift.shape), data.target, data.split_column)
    path = write_predictions(args.out, names, predict(model, X), model.classes)
    print(f"{len(names)} predictions: {path}")
    return 0


def _study_table(results: dict) -> str:
    """The summary as text: rank, variant, train/val/test mean +- std, change with its 95%
    interval (starred when the interval excludes 0), verdict."""
    m = results["metric"]
    rows = sorted(results["variants"], key=lambda v: v["rank"])
    width = max([len(v["name"]) for v in rows] + [7])

    def cell(stat):
        return "   --        " if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"

    def change(v):
        if v["delta_test"] is None:
            return ""
        ci = v.get("delta_test_ci95")
        return (f"{v['delta_test']:+.3f}" + ("*" if v["significant"] else " ")
                + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
    lines = [f"{'rank':>4}  {'variant':<{width}}  {'train ' + m:<13}  {'val ' + m:<13}  "
             f"{'test ' + m:<13}  {'Δ test [95% CI]':<24}  verdict"]
    for v in rows:
        s = v["stats"]
        lines.append(f"{v['rank']:>4}  {v['name']:<{width}}  {cell(s['train_' + m])}  "
                     f"{cell(s['val_' + m])}  {cell(s['test_' + m])}  {change(v):<24}  {v['verdict']}")
    return "\n".join(lines)


def _value(x) -> str:
    """A config value as the study's summary prints it: floats to 3 significant digits."""
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _study(args) -> int:
    from regulab.config.core import parse_overrides
    from regulab.studies.spec import clinic_path, load_study
    from regulab.studies.study import run_study
    spec = load_study(args.study if args.study else clinic_path(), parse_overrides(args.set))
    workers = args.workers
    if workers is not None and workers.strip().isdigit():
        workers = int(workers)
    result = run_study(spec, out=args.out, db=args.db, quick=args.quick,
                       progress=False if args.quiet else None, workers=workers)
    r = result.results
    m = r["metric"]
    if r["variants"]:
        print(_study_table(r))
        print("Δ test: mean change against the baseline, 95% t interval over seeds (paired by "
              "seed, Welch when the seeds differ); *: the interval excludes 0")
    for v in r["variants"]:
        if v.get("tuned"):
            t = v["tuned"]
            print(f"tuned {v['name']}: {t['key']} = {_value(t['chosen'])} (best mean validation "
                  f"{m} of {', '.join(map(_value, t['values']))})"
                  + ("; at the edge of the grid: a better strength may lie beyond" if t.get("at_edge") else ""))
    if r.get("combination"):
        c, found = r["combination"], r.get("search")
        print(f"combination: {' + '.join(c['parts'])}" + (
            "" if not found else f"; {len(found['trials'])} Optuna trials on validation, best: "
            + ", ".join(f"{k} = {_value(x)}" for k, x in found["best"]["params"].items())))
    runs = r.get("runs_trained", sum(len(v["runs"]) for v in r["variants"]))
    print(f"{len(r['variants'])} variants, {runs} runs in {r['seconds']:.0f} s")
    print(f"report: {result.report}")
    return 0


def _sweep(args) -> int:
    import optuna

    from regulab.config.core import parse_overrides
    from regulab.sweeps.spec import load_sweep
    from regulab.sweeps.worker import format_trials, sweep
    spec = load_sweep(args.sweep, parse_overrides(args.set), trials=args.trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)    # the table below says it all
    result = sweep(spec, out=args.out, db=args.db, progress=False if args.quiet else None)
    print(format_trials(result.trials, spec.metric))
    b = result.best
    if b is not None:
        test = " ".join(f"{k}={v:.4f}" for k, v in b["test"].items() if k in ("test_acc", "test_r2"))
        print(f"best: trial {b['trial']} {spec.metric}={b['value']:.4f} {test} "
              f"params={json.dumps(b['params'])}")
        print(f"config: {result.sweep_dir / 'best.toml'}")
    return 0


def _report(args) -> int:
    from pathlib import Path

    from regulab.studies.report import render_report
    from regulab.studies.study import load_results
    path = render_report(load_results(args.study_dir, db=args.db), Path(args.study_dir) / "report.html")
    print(f"report: {path}")
    return 0


def _resume(args) -> int:
    from regulab.engine.optimizers import no_dynamo_import
    from regulab.runs.run import resume
    no_dynamo_import()
    run = resume(args.run_dir, db=args.db, progress=False if args.quiet else None, nproc=args.nproc)
    if os.environ.get("RANK", "0") == "0":     # under torchrun: once, by rank 0
        print(_summary(run))
    return 0


def _runs(args) -> int:
    from regulab.paths import remove_partial
    from regulab.runs.store import RunStore, format_runs_table
    rows = RunStore(args.db).runs(limit=args.limit, status=args.status, name=args.name, kind=args.kind)
    # what a start killed before its run directory appeared left: beside the runs, in runs/
    for folder in {Path("runs"), *(Path(r["run_dir"]).parent for r in rows if r.get("run_dir"))}:
        remove_partial(folder)
    print(json.dumps(rows, indent=2, default=str) if args.json else format_runs_table(rows))
    return 0


_COMPLETION = """# regulab completion for {shell} (regulab completion {shell}); source it from your shell's rc file
{prelude}_regulab() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" i opts words=""
    for ((i = 1; i < COMP_CWORD; i++)); do      # the subcommand: the first word that is no option
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break ;; esac
    done
    case "$cmd" in
{cases}
        *) opts="{top}" ;;
    esac
    if [[ -z "$cmd" || "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n "$words" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))    # files: configs, study files, run directories
    fi
}}
complete -o filenames -F _regulab regulab
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell`` (bash, or zsh through its bash compatibility) built
    from ``parser``: the subcommands and global options first, then each subcommand's options,
    and its arguments' choices or file names."""
    def flags(p: argparse.ArgumentParser) -> list[str]:
        return [o for a in p._actions for o in a.option_strings]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    def words(p: argparse.ArgumentParser) -> list[str]:     # the choices of its arguments
        return [str(c) for a in p._actions if not a.option_strings and a.choices for c in a.choices]
    cases = "\n".join(f'        {name}) opts="{" ".join(flags(p))}"; words="{" ".join(words(p))}" ;;'
                      for name, p in sub.choices.items())
    prelude = "autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else ""
    top = " ".join([*sub.choices, *flags(parser)])
    return _COMPLETION.format(shell=shell, prelude=prelude, cases=cases, top=top)


def _completion(args) -> int:
    print(completion_script(build_parser(), args.shell), end="")
    return 0


def _config(args) -> int:
    from regulab.config.core import defaults_toml, json_schema
    if args.schema:
        print(json.dumps(json_schema(), indent=1))
    else:
        print(defaults_toml(), end="")      # it ends in a newline
    return 0


def _datasets(args) -> int:
    from regulab.modalities.sources import list_datasets
    infos = list_datasets()
    width = max(len(i.name) for i in infos)
    for i in infos:
        print(f"{i.name:<{width}}  {i.samples:>22}  {i.shape:<14} {i.task:<14} {i.description}")
    print(f"{'csv:PATH':<{width}}  a CSV file with a header; set data.target to the label column")
    print(f"{'npz:PATH':<{width}}  a NumPy .npz with arrays X and y (optionally X_test, y_test)")
    print(f"{'images:DIR':<{width}}  one sub-folder of PNG/JPEG images per class")
    print(f"{'audio:DIR':<{width}}  WAV clips labelled by folder or file name, read as [audio] says")
    print(f"{'text:PATH':<{width}}  a CSV of texts and labels, or one sub-folder of .txt files per class, "
          "read as [text] says")
    print(f"{'video:DIR':<{width}}  one sub-folder of clips per class, read as [video] says; needs "
          "pip install 'regulab[video]'")
    return 0


def _explain(args) -> int:
    from regulab.explain import explain_backprop
    print(explain_backprop(args.spec, args.iterations))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="regulab", description="Train neural networks that generalize.")
    parser.add_argument("--version", action="version", version=f"regulab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages on stderr "
                        "from the 'regulab' logger: -v its info (which runs train alone and why), "
                        "-vv its debug")
    parser.add_argument("-q", "--quiet", dest="silent", action="store_true", help="errors only: "
                        "no warnings, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    nproc_help = "processes for data-parallel training (torch.distributed)"
    db_help = "run store URL (sqlite:///path.db, postgresql://...); default $REGULAB_DB or runs/regulab.db"

    p = sub.add_parser("train", help="train one model from a TOML config")
    p.add_argument("config", help="config file (TOML)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<name>-<timestamp>)")
    p.add_argument("--db", help=db_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--members", type=int, help="train an ensemble of K members (seeds seed..seed+K-1)")
    p.add_argument("--bagging", action="store_true", help="with --members: each on a bootstrap resample")
    p.add_argument("--nproc", metavar="N", help=nproc_help + " (same as --set train.nproc=N)")
    p.set_defaults(func=_train)

    p = sub.add_parser("study", help="a study: baseline and variants over seeds, ranked, reported "
                                     "(no file: the built-in overfitting clinic)")
    p.add_argument("study", nargs="?", help="study file (TOML); default: the overfitting clinic")
    p.add_argument("--quick", action="store_true", help="the study's quick version (fewer epochs)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the study's base config (repeatable)")
    p.add_argument("--out", help="study directory (default runs/study-<name>-<timestamp>)")
    p.add_argument("--db", help=db_help)
    p.add_argument("--workers", metavar="N", help="processes on this machine that train the runs side "
                                                  "by side: auto (one per core, at most 4) or N "
                                                  "(same as [study] workers)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_study)

    p = sub.add_parser("sweep", help="hyperparameter search with Optuna; start one per core or "
                                     "machine on one database to share the sweep")
    p.add_argument("sweep", help="sweep file (TOML)")
    p.add_argument("--db", help=db_help + "; holds the Optuna study too")
    p.add_argument("--out", help="sweep directory (default runs/sweep-<name>-<timestamp>; "
                                 "workers on one machine may share it)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the sweep's base config (repeatable)")
    p.add_argument("--trials", type=int, help="the trial budget, over [sweep] trials")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("report", help="render a study's HTML report again from the run store")
    p.add_argument("study_dir", help="the study directory")
    p.add_argument("--db", help=db_help + " (default: the store the study was run with)")
    p.set_defaults(func=_report)

    p = sub.add_parser("resume", help="continue a stopped or killed run")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("--db", help=db_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", metavar="N", help=nproc_help + " (default: the run's train.nproc)")
    p.set_defaults(func=_resume)

    p = sub.add_parser("predict", help="predictions of a finished run's model for a CSV, an .npz "
                                       "or a folder of images")
    p.add_argument("run_dir", help="the run directory")
    p.add_argument("input", help="a CSV of feature columns, an .npz with X, or a folder of images")
    p.add_argument("--out", default="predictions.csv", help="the CSV to write (default: "
                   "predictions.csv): one row per input, its predicted class and probabilities")
    p.set_defaults(func=_predict)

    p = sub.add_parser("runs", help="list the runs in the run store")
    p.add_argument("--db", help=db_help)
    p.add_argument("--limit", type=int, default=None, help="newest N runs (of those the filters keep)")
    p.add_argument("--status", help="only runs with this status (completed, running, diverged, ...)")
    p.add_argument("--name", help="only runs whose name matches this pattern (* any characters, "
                   "? one; case-sensitive; without them the exact name)")
    p.add_argument("--kind", help="only runs of this kind (train, study, ...)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_runs)

    p = sub.add_parser("config", help="print every config key with its default and meaning")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--defaults", action="store_true", help="a complete commented TOML config "
                      "of the defaults (it loads to them): a starting point to edit")
    what.add_argument("--schema", action="store_true", help="a JSON Schema of config files, for "
                      "editors (each key's meaning, default, type, bounds or choices)")
    p.set_defaults(func=_config)

    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh): "
                       "eval \"$(regulab completion bash)\" in ~/.bashrc")
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell")
    p.set_defaults(func=_completion)

    p = sub.add_parser("datasets", help="list the built-in datasets")
    p.set_defaults(func=_datasets)

    p = sub.add_parser("explain", help="step-by-step walk-throughs of the notes' worked examples")
    what = p.add_subparsers(dest="topic", required=True, parser_class=_Parser)
    q = what.add_parser("backprop", help="backpropagation, every value and partial derivative")
    q.add_argument("--spec", help="a network and data of your own (JSON or TOML); default: the "
                                  "notes' 2-2-2 sigmoid network")
    q.add_argument("--iterations", type=int, default=2, help="gradient steps to trace (default 2, at most 1000)")
    q.set_defaults(func=_explain)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler writing to ``sys.stderr`` as it is when each record is emitted (callers and
    test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _logging(verbose: int, silent: bool) -> None:
    """The 'regulab' logger's level for this command (WARNING, -v INFO, -vv DEBUG, -q ERROR),
    its records on stderr as one line each, through one handler however often ``main`` runs."""
    log = logging.getLogger("regulab")
    log.setLevel(logging.ERROR if silent else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    if not any(getattr(h, "regulab_cli", False) for h in log.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("regulab: %(levelname)s: %(message)s"))
        handler.regulab_cli = True
        log.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose, args.silent)
    if args.silent and hasattr(args, "quiet"):
        args.quiet = True       # no progress bar either
    try:
        return args.func(args)
    except RegulabInputError as e:
        print(f"regulab: error: {e}", file=sys.stderr)
        return 2
    except DivergedError as e:
        print(f"regulab: {e}", file=sys.stderr)
        return 3
    except OutputError as e:     # disk full, read-only, no permission: resume later
        print(f"regulab: error: {e.strerror}", file=sys.stderr)
        return 1
    except RunFailed as e:       # a data-parallel process lost: resume later
        print(f"regulab: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:      # `regulab explain backprop | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        again = {"study": "the same 'regulab study' command with --out the study directory",
                 "sweep": "the same 'regulab sweep' command"}.get(args.command, "'regulab resume RUN_DIR'")
        print(f"regulab: interrupted; continue with {again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
