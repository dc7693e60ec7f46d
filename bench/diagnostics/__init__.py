"""``bench diagnose``: how close each estimator's gradient is to a well-defined reference gradient.

    reference.py   the Gaussian-smoothed loss's gradient, by local expectation and Monte Carlo
    measures.py    cosine, relative error, sign agreement, norm ratio against it
    run.py         model states, the loop over estimators and training points, the database rows
"""
