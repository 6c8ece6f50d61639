"""hean's trading worker (``python -m hean.worker``): one per TradingStrategy.

Modules: :mod:`.config` (typed views of the custom resources), :mod:`.ledger` (exact
decimal paper account), :mod:`.engine` (indicators -> strategy -> risk -> fills),
:mod:`.app` (watches, replay loop, status writer) and :mod:`.http` (endpoints).
"""
