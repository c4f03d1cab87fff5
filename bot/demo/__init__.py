"""`quanbot demo`: a simulated day in the sample street, played through the real engine on a fake clock.

Modules: scenario (the YAML day and its seeded expansion), simulation (the day itself), live (the terminal
view), summary (figures, tables and the HTML report). Must not: be imported by the product's run paths.
"""
