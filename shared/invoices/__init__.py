"""The monthly consolidated invoice: one per org per closed period, numbered at finalisation."""
