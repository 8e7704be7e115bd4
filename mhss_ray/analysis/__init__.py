"""Study results as tables, plots and a summary: `mhss-analyze`, and the notebooks in analysis/."""

from .load import StudyTables, baseline_arms, best_trials, epoch_budget, load_studies, load_study, study_paths

__all__ = ["StudyTables", "baseline_arms", "best_trials", "epoch_budget", "load_studies", "load_study", "study_paths"]
