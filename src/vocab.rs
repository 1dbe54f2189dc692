//! Vocabulary: token <-> id maps at character or word level. (being written)
