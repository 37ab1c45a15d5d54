"""Deduplicated reach (issue 15, part 3): the pure mathematics of the reach round.

The design is WFA Halo's Honest Majority Share Shuffle (HMSS; research note
../shared/reach.md §4A), over a sector-keyed bucket space:

1. **Node** (``buckets``, ``shares``): each person's sector pseudonym goes to a bucket
   b = H(salt, pseudonym) mod m; the node builds a vector over the m buckets (a count per
   bucket, or a random digit per category of institution) and splits it into two additive shares
   over Z_2^k: one expanded from a 32-byte seed by ChaCha20, the other the vector minus it.
2. **Helpers** (``shares``, ``shuffle``, ``noise``): each helper sums the nodes' shares, appends
   secret-shared *dummy* entries whose number per value is a shifted, clamped discrete Gaussian
   (OpenDP), and both apply one secret permutation derived from a secret they share.
3. **Aggregator** (``histogram``, ``estimate``, ``venn``): adds the two shuffled share vectors,
   histograms the values, subtracts the dummies' shift, and estimates reach (linear counting),
   the frequency distribution (Panjer inversion of the compound-Poisson collisions) and the
   overlap of categories (log-occupancy per subset of categories, Möbius inversion), each with a
   95% interval.

The privacy proof is docs/explanation/reach-privacy.md. Only ``noise`` imports OpenDP, and only
the helpers need it; nodes and the aggregator import the other modules.
"""
