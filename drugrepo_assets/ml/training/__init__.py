"""Training DrugBAN (vanilla and CDAN), its defaults, the train-and-evaluate pipeline and its pictures."""
