"""The node's audit log (docs/architecture.md §7): records in the node's store, the Merkle tree
over them, signed checkpoints, proofs for receipts, and witnessing of partners' logs."""
