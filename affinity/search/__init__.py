"""The search: space YAML -> validated space -> Optuna study -> leaderboard (see README)."""
