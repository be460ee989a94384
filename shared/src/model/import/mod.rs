//! Converts models trained in Python (LightGBM text, XGBoost JSON) into a Verdict artifact.
