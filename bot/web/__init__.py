"""The command-centre console: a FastAPI app serving Chinese pages (Jinja2 + htmx) and the JSON API under /api/.

Owns: HTTP, cookies, templates, the console's background-job runner. Each area (总览, 工单, SLA 风险, 网格与热点,
知识库, 评测, 人员) is one module under `routes/` with an `api` router and a `pages` router.
Must not: hold rules or figures (casestore, policies and knowledge do), keep state in memory between requests
(sessions, jobs and the signing key live in the database, so any number of replicas serve the same staff), or
load anything from the internet (htmx and Chart.js are served from `static/`).
"""
