"""What part of the street a console account may see: the street (everything), one community or one grid.

Owns: `Scope` (the allowed grid ids, computed from grids.yaml) and the one check `allows(grid_id)`.
Must not: query the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from casestore.models import AdminScopeKind, AdminUser
from policies.models import Grids


@dataclass(frozen=True)
class Scope:
    kind: AdminScopeKind
    ident: str | None
    label: str  # Chinese, for the page header: "全街道", "XX社区", "XX网格"
    grid_ids: frozenset[str] | None  # None: every grid
    community_ids: frozenset[str] | None

    def allows(self, grid_id: str | None) -> bool:
        """A case or worker in `grid_id` is visible; a case with no grid only to the street."""
        if self.grid_ids is None:
            return True
        return grid_id is not None and grid_id in self.grid_ids

    def allows_community(self, community_id: str | None) -> bool:
        if self.community_ids is None:
            return True
        return community_id is not None and community_id in self.community_ids

    @property
    def is_street(self) -> bool:
        return self.grid_ids is None


def scope_of(admin: AdminUser, grids: Grids) -> Scope:
    """The scope of an account; an id that grids.yaml no longer knows sees nothing (never everything)."""
    kind = AdminScopeKind(admin.scope_kind)
    if kind is AdminScopeKind.street:
        return Scope(kind, None, grids.street.name, None, None)
    for community in grids.communities:
        if kind is AdminScopeKind.community and community.id == admin.scope_id:
            return Scope(kind, community.id, community.name, frozenset(g.id for g in community.grids),
                         frozenset({community.id}))
        for grid in community.grids:
            if kind is AdminScopeKind.grid and grid.id == admin.scope_id:
                return Scope(kind, grid.id, f"{community.name}·{grid.name}", frozenset({grid.id}),
                             frozenset({community.id}))
    return Scope(kind, admin.scope_id, f"未知范围 {admin.scope_id}", frozenset(), frozenset())


def known_scope(kind: AdminScopeKind, ident: str | None, grids: Grids) -> bool:
    """Whether grids.yaml has this community or grid (the CLI refuses an unknown one)."""
    if kind is AdminScopeKind.street:
        return True
    if kind is AdminScopeKind.community:
        return any(c.id == ident for c in grids.communities)
    return any(g.id == ident for c in grids.communities for g in c.grids)
