//! Multinomial sampling with torch.multinomial's contract. (being written)
