"""Pure tracking rules: attribution arithmetic, order attribution, post membership and
deliverable confirmation. No I/O, no clock reads, no asyncio."""
