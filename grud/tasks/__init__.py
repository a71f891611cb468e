"""Tasks: Lightning modules (classification, forecasting, imputation as an auxiliary loss),
metrics and the classical baselines. Each task builds its network from plain hyperparameters,
so a checkpoint reloads on its own."""
