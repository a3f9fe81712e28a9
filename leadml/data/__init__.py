"""Reading and writing lead data (`io`) and the seeded synthetic lead database (`synth`)."""
