"""`quanbot demo`: a simulated day in the sample street, played through the real engine on a fake clock.

Modules: scenario (the YAML day and its seeded expansion), simulation (the day itself: residents and workers
who only act through the dialogue engine), runner (the demo's own directory, settings and setup, and one run
end to end), live (the terminal view), summary (figures read back from the case store, tables and the HTML
report) and charts (its inline SVG).
Must not: be imported by the product's run paths, or write to the shared database or caches' keys.
"""
