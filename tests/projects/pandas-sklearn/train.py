"""Fit a ridge regression to data/housing.csv and write the test predictions."""
import argparse

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/housing.csv")
    parser.add_argument("--target", default="price")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--output", default="predictions.csv")
    args = parser.parse_args()

    df = pd.read_csv(args.data)
    df["age"] = 2024 - df.pop("built")
    X, y = df.drop(columns=[args.target]), df[args.target]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=args.test_size)
    scaler = StandardScaler().fit(X_train)
    model = Ridge(alpha=args.alpha).fit(scaler.transform(X_train), y_train)
    for name, (xs, ys) in {"train": (X_train, y_train), "test": (X_test, y_test)}.items():
        pred = model.predict(scaler.transform(xs))
        print(f"{name} rmse {np.sqrt(mean_squared_error(ys, pred)):.4f} "
              f"r2 {r2_score(ys, pred):.4f}")
    out = X_test.assign(price=y_test, predicted=model.predict(scaler.transform(X_test)))
    out.sort_index().to_csv(args.output, float_format="%.6f")
    summary = pd.Series(model.coef_, index=X.columns).sort_values()
    print(summary.to_string())


if __name__ == "__main__":
    main()
