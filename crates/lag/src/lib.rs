//! Consumer lag evaluation (placeholder until the evaluator lands).
