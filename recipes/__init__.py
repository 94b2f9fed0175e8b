"""One recipe per model (recipes/base.py says what a recipe holds); `RECIPES[name]` is the only
place where a model name is looked up."""
from recipes import dhhn, han, ma
from recipes.base import ABLATION_SWITCHES, Recipe, ReportRow, SelectionRole, TrainingModule, WeakLabelCriterion

RECIPES = {recipe.name: recipe for recipe in (dhhn.RECIPE, han.RECIPE, ma.RECIPE)}

__all__ = ["ABLATION_SWITCHES", "RECIPES", "Recipe", "ReportRow", "SelectionRole", "TrainingModule",
           "WeakLabelCriterion"]
