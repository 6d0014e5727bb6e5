"""Graph rewrites: BN folding, activation fusion, QDQ insertion, lowering."""
