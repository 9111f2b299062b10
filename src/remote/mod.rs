//! SSH sessions to workers (one multiplexed master per worker), rsync, worker-side assets.
