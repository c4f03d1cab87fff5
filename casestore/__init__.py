"""The case store: tables, migrations, data functions and the closed loop (受理 → 分派 → 处置 → 反馈 → 评价).

Owns: the SQLModel tables, the state machine and `can()`, identity (channel accounts), the audit trails,
intake, routing, deadlines, the sweep (reminders, escalation, auto-close), the outbound queue and the one
definition of each figure. Data functions are keyword-only and take an explicit session; every change of a
case writes its audit event in the same transaction.
Must not: know about channels, the LLM or the knowledge base.
"""
