"""Controllers that sit above any Robot (Cartesian end-effector control)."""
