"""regulab inside scikit-learn: a grid search over L2 and dropout in a Pipeline with a scaler,
on scikit-learn's digits, with regulab's MLP and then with a network of one's own.

    .venv/bin/python examples/byo/grid_search.py
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from regulab.sklearn import RegulabClassifier


def wide_net(width: int = 128) -> nn.Module:
    """A user's network: 64 pixels -> width -> dropout -> 10 classes."""
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, 10))


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    grid = {"regulabclassifier__regularization__l2": [0.0, 1e-3, 1e-2],
            "regulabclassifier__model__dropout": [0.0, 0.3]}
    for name, estimator in [("regulab's MLP", RegulabClassifier(model__hidden=[128], train__epochs=30)),
                            ("wide_net", RegulabClassifier(model=wide_net, train__epochs=30))]:
        search = GridSearchCV(make_pipeline(StandardScaler(), estimator), grid, cv=3).fit(X_train, y_train)
        print(f"{name}: best {search.best_params_}, CV accuracy {search.best_score_:.3f}, "
              f"test accuracy {search.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
