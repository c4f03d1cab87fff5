"""Domain errors. Each carries a short Chinese message that may be shown to a person as it is."""

from __future__ import annotations


class DomainError(Exception):
    user_message = "操作没有成功，请稍后再试。"

    def __init__(self, detail: str, user_message: str | None = None):
        super().__init__(detail)
        if user_message:
            self.user_message = user_message


class IllegalTransition(DomainError):
    user_message = "这个工单当前的状态不能进行该操作。"


class PermissionDenied(DomainError):
    user_message = "抱歉，您没有权限处理这个工单。"


class NotFound(DomainError):
    user_message = "没有找到这个工单，请核对工单号。"


class ConcurrentUpdate(DomainError):
    user_message = "工单刚刚被其他人更新，请刷新后再试。"
