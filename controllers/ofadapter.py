"""The one place where core :class:`Rule` values become OpenFlow 1.3 messages.

Works with any datapath object of os-ken or Ryu: it only uses ``datapath.ofproto`` and
``datapath.ofproto_parser``, so it imports neither framework.
"""

from __future__ import annotations

from typing import Any

from testbed.core.rules import Match, Output, Rule

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


def to_instructions(datapath: Any, rule: Rule) -> list:
    """The rule's actions as one apply-actions instruction (none at all: drop)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    actions = []
    for action in rule.actions:
        if isinstance(action, Output):
            actions.append(parser.OFPActionOutput(action.port))
        else:
            raise TypeError(f"no OpenFlow translation for action {action!r}")
    if not actions:
        return []
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]


def flow_mod(datapath: Any, rule: Rule, delete: bool = False) -> Any:
    """``Rule`` -> ``OFPFlowMod``: add it, or (``delete``) remove exactly it."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    if datapath.id is not None and rule.dpid != datapath.id:
        raise ValueError(f"rule for dpid {rule.dpid:#x} sent to dpid {datapath.id:#x}")
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
