"""Model runners: the only code that touches torch. Each turns a padded batch into results."""
