"""The taxonomy ids as StrEnums. `taxonomy.yaml` must list exactly these ids (the loader checks it)."""

from __future__ import annotations

from enum import StrEnum


class Intent(StrEnum):
    inquiry = "inquiry"
    help = "help"
    complaint = "complaint"
    suggestion = "suggestion"
    wish = "wish"
    dispute = "dispute"
    status = "status"
    feedback = "feedback"
    chitchat = "chitchat"


class Category(StrEnum):
    building = "building"
    utilities = "utilities"
    environment = "environment"
    public_facilities = "public_facilities"
    parking_traffic = "parking_traffic"
    safety = "safety"
    property_mgmt = "property_mgmt"
    elderly_disabled = "elderly_disabled"
    family_youth = "family_youth"
    social_security = "social_security"
    documents = "documents"
    urban_management = "urban_management"
    neighborhood = "neighborhood"
    health = "health"
    other = "other"


class Urgency(StrEnum):
    emergency = "emergency"
    urgent = "urgent"
    normal = "normal"


URGENCY_RANK = {Urgency.normal: 0, Urgency.urgent: 1, Urgency.emergency: 2}


class Role(StrEnum):
    full_time = "full_time"
    part_time = "part_time"
    volunteer = "volunteer"
    party_member = "party_member"
    supervisor = "supervisor"
    mediator = "mediator"
    property_manager = "property_manager"
    duty_desk = "duty_desk"
    street_command = "street_command"


# routing targets that are not plain roles but positions inside a grid
ROUTING_TARGETS = {r.value for r in Role} | {"deputy", "volunteer_lead"}

ROLE_NAMES_ZH = {
    Role.full_time: "专职网格员",
    Role.part_time: "兼职网格员",
    Role.volunteer: "志愿者",
    Role.party_member: "党员",
    Role.supervisor: "网格长",
    Role.mediator: "人民调解员",
    Role.property_manager: "物业项目经理",
    Role.duty_desk: "社区值班台",
    Role.street_command: "街道指挥中心",
}
