"""An OpenAlgo-compatible broker simulator (``pm-engine broker-sim``).

Product code, not a test helper: a trader runs it to try the whole loop before connecting a real
account, and the test suite drives the OpenAlgo adapter against it over real HTTP. It speaks the
endpoints of docs/domain.md#orders-through-openalgo with their validation and answers, fills at a price the caller
sets, and
has switches for the ways a real broker gateway goes wrong (latency, rejections, partial fills, a
timeout, a cut connection or a 500 after the order was accepted, a success without an order id, an
expired session, rate limits). It imports only the core, and nothing of the adapter: the two are
written apart, so the simulator cannot agree with the adapter by construction (the official
``openalgo`` client is the judge of its dialect in the tests).
"""
