//! Ranking metrics: AUC ROC, average precision, card precision@k.
