"""The one place where core :class:`Rule` and :class:`Group` values become OpenFlow 1.3
messages.

Works with any datapath object of os-ken or Ryu: it only uses ``datapath.ofproto`` and
``datapath.ofproto_parser``, so it imports neither framework.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from testbed.core.rules import GROUP_ALL, GROUP_FF, Action, Group, GroupAction, Match, Output, Rule

ALL_BITS = 2**64 - 1


def to_match(parser: Any, match: Match) -> Any:
    """``Match`` -> ``OFPMatch`` (the model's field names are the OXM names)."""
    kwargs: dict[str, Any] = {}
    for name, value in match.items():
        if name == "eth_dst_mask":
            continue
        if name == "eth_dst" and match.eth_dst_mask is not None:
            value = (value, match.eth_dst_mask)
        kwargs[name] = value
    return parser.OFPMatch(**kwargs)


def to_actions(parser: Any, actions: Iterable[Action]) -> list:
    """Model actions -> OpenFlow action objects, in order."""
    result = []
    for action in actions:
        if isinstance(action, Output):
            result.append(parser.OFPActionOutput(action.port))
        elif isinstance(action, GroupAction):
            result.append(parser.OFPActionGroup(action.group_id))
        else:
            raise TypeError(f"no OpenFlow translation for action {action!r}")
    return result


def to_instructions(datapath: Any, rule: Rule) -> list:
    """The rule's actions as one apply-actions instruction (none at all: drop)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    actions = to_actions(parser, rule.actions)
    if not actions:
        return []
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]


def _check_dpid(datapath: Any, dpid: int, what: str) -> None:
    if datapath.id is not None and dpid != datapath.id:
        raise ValueError(f"{what} for dpid {dpid:#x} sent to dpid {datapath.id:#x}")


def flow_mod(datapath: Any, rule: Rule, delete: bool = False) -> Any:
    """``Rule`` -> ``OFPFlowMod``: add it, or (``delete``) remove exactly it."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    _check_dpid(datapath, rule.dpid, "rule")
    common = dict(
        cookie=rule.cookie,
        table_id=rule.table,
        priority=rule.priority,
        match=to_match(parser, rule.match),
    )
    if delete:
        return parser.OFPFlowMod(datapath, command=ofp.OFPFC_DELETE_STRICT,
                                 cookie_mask=ALL_BITS, out_port=ofp.OFPP_ANY,
                                 out_group=ofp.OFPG_ANY, **common)
    return parser.OFPFlowMod(datapath, command=ofp.OFPFC_ADD,
                             instructions=to_instructions(datapath, rule), **common)


def delete_cookie(datapath: Any, cookie: int) -> Any:
    """Delete every flow carrying ``cookie`` in every table (one app's rules)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(datapath, cookie=cookie, cookie_mask=ALL_BITS,
                             table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                             match=parser.OFPMatch())


def group_mod(datapath: Any, group: Group, command: str = "add") -> Any:
    """``Group`` -> ``OFPGroupMod``: ``command`` is "add", "modify" or "delete".

    Buckets of a fast-failover group watch their port; other buckets watch nothing
    (OFPP_ANY, OFPG_ANY), as a switch requires for groups of type all.
    """
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    _check_dpid(datapath, group.dpid, "group")
    commands = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}
    if command not in commands:
        raise ValueError(f"group command {command!r} (must be one of {', '.join(commands)})")
    types = {GROUP_ALL: ofp.OFPGT_ALL, GROUP_FF: ofp.OFPGT_FF}
    buckets = []
    if command != "delete":
        buckets = [
            parser.OFPBucket(
                weight=0,
                watch_port=ofp.OFPP_ANY if b.watch_port is None else b.watch_port,
                watch_group=ofp.OFPG_ANY,
                actions=to_actions(parser, b.actions),
            )
            for b in group.buckets
        ]
    return parser.OFPGroupMod(datapath, command=commands[command], type_=types[group.type],
                              group_id=group.group_id, buckets=buckets)


def delete_groups(datapath: Any) -> Any:
    """Delete every group on ``datapath`` (and with them the flows that use them)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPGroupMod(datapath, command=ofp.OFPGC_DELETE, type_=ofp.OFPGT_ALL,
                              group_id=ofp.OFPG_ALL)


def replace_messages(datapath: Any, rules: list[Rule], cookie: int) -> list:
    """Messages that make ``rules`` the only flows with ``cookie`` on ``datapath``.

    Delete, barrier (a switch may reorder messages between barriers), add, barrier:
    the final barrier's reply says the rules are in.
    """
    parser = datapath.ofproto_parser
    return [
        delete_cookie(datapath, cookie),
        parser.OFPBarrierRequest(datapath),
        *(flow_mod(datapath, rule) for rule in rules),
        parser.OFPBarrierRequest(datapath),
    ]


def punt_flow(datapath: Any, cookie: int, priority: int, **match: Any) -> Any:
    """A flow that sends whole packets matching ``match`` to the controller."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath, cookie=cookie, priority=priority, match=parser.OFPMatch(**match),
        instructions=[parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS,
            [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)])])


def port_up(msg: Any) -> bool:
    """Whether an OFPPortStatus message leaves its port usable (not deleted, link up,
    not administratively down)."""
    ofp = msg.datapath.ofproto
    return not (msg.reason == ofp.OFPPR_DELETE or msg.desc.state & ofp.OFPPS_LINK_DOWN
                or msg.desc.config & ofp.OFPPC_PORT_DOWN)
