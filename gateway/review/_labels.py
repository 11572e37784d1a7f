"""The words a review uses, in Chinese and English."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from gateway.workorders import Bilingual

__all__ = ["CHANNEL", "CONSOLE_EVENT", "EVENT", "ROLE", "TRANSITION", "WINDOW", "duration",
           "local_iso", "text"]


def text(zh: str, en: str) -> Bilingual:
    return Bilingual(zh=zh, en=en)


#: Alarm-journal transitions.
TRANSITION: dict[str, Bilingual] = {
    "activated": text("告警触发", "Alarm raised"),
    "reactivated": text("告警再次触发", "Alarm raised again"),
    "returned_to_normal": text("告警条件恢复", "Alarm condition returned to normal"),
    "acknowledged": text("操作员确认告警", "Alarm acknowledged by operator"),
    "realarmed": text("告警仍在，重新通报", "Still active: announced again"),
    "reset": text("操作员复位锁存告警", "Latched alarm reset by operator"),
    "shelved": text("告警被搁置", "Alarm shelved"),
    "unshelved": text("取消搁置", "Alarm unshelved"),
    "shelve_expired": text("搁置到期", "Shelving expired"),
    "suppressed": text("告警被抑制", "Alarm suppressed"),
    "unsuppressed": text("取消抑制", "Alarm no longer suppressed"),
    "removed_from_service": text("停用（维护）", "Removed from service"),
    "returned_to_service": text("恢复使用", "Returned to service"),
    "comment": text("操作员备注", "Operator comment"),
    "chattering": text("告警频繁抖动", "Alarm chattering"),
    "chatter_ended": text("抖动结束", "Chattering ended"),
    "closed": text("系统关闭告警", "Alarm closed by the system"),
    "flood_grouped": text("告警泛滥期间归组", "Grouped during an alarm flood"),
    "flood_released": text("告警泛滥结束后通报", "Announced after the alarm flood"),
    "flood_started": text("告警泛滥开始", "Alarm flood started"),
    "flood_ended": text("告警泛滥结束", "Alarm flood ended"),
}

#: Work-order events (not the escalation, which names its level and role).
EVENT: dict[str, Bilingual] = {
    "raised": text("工单生成并上报", "Work order raised and sent upstream"),
    "unacknowledged": text("最高级仍未确认，重新上报", "Still unacknowledged at the top: re-sent"),
    "pre_alert": text("时限预警", "Deadline pre-alert"),
    "alarm_cleared": text("工单记录告警恢复", "Alarm cleared on the work order"),
    "acknowledged": text("平台确认接单", "Acknowledged by the platform"),
    "on_site": text("人员到场", "Staff on site"),
    "resolved": text("处理完毕", "Resolved"),
    "rejected": text("平台退回", "Rejected by the platform"),
    "follow_up_due": text("回访到期", "Follow-up due"),
    "alarm_joined": text("关联告警并入工单", "Another alarm joined the order"),
    "assigned": text("派单", "Dispatched"),
    "followed_up": text("回访", "Follow-up call"),
    "reopened": text("回访不满意，工单重新打开", "Follow-up unsatisfied: order reopened"),
}

#: Statuses an operator recorded at the edge (status_via console), not the platform.
CONSOLE_EVENT: dict[str, Bilingual] = {
    "acknowledged": text("中控室记录接单", "Acknowledged (recorded at the console)"),
    "on_site": text("人员到场（中控室记录）", "Staff on site (recorded at the console)"),
    "resolved": text("处理完毕（中控室记录）", "Resolved (recorded at the console)"),
}

#: The built-in ladder roles; a site's own roles show by their id.
ROLE: dict[str, Bilingual] = {
    "control_room": text("中控室", "Control room"),
    "patrol": text("巡逻岗", "Patrol"),
    "engineering": text("工程组", "Engineering"),
    "supervisor": text("主管", "Supervisor"),
}

#: How a report reached the control room.
CHANNEL: dict[str, Bilingual] = {
    "phone": text("电话", "Phone"),
    "patrol": text("巡逻发现", "Patrol"),
    "walk_in": text("来访", "Walk-in"),
    "app": text("App", "App"),
    "email": text("邮件", "Email"),
    "other": text("其他", "Other"),
}

WINDOW: dict[str, Bilingual] = {
    "acknowledge": text("确认时限", "Acknowledge window"),
    "on_site": text("到场时限", "On-site window"),
    "resolve": text("处理时限", "Resolution window"),
}


def local_iso(ts: float, zone: ZoneInfo) -> str:
    """``ts`` as ISO 8601 in the site's time zone, to the second."""
    return dt.datetime.fromtimestamp(ts, tz=zone).isoformat(timespec="seconds")


def duration(seconds: float, lang: str) -> str:
    """``125`` → ``2分05秒`` / ``2 min 05 s``; hours when there are any."""
    total = round(abs(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if lang == "zh-CN":
        if hours:
            return f"{hours}小时{minutes:02d}分"
        return f"{minutes}分{secs:02d}秒" if minutes else f"{secs}秒"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
