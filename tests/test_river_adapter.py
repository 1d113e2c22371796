import pytest
from river import datasets

from streamlearn.learners.river_adapter import RiverLearner

REGRESSORS = {"linear_model.LinearRegression", "linear_model.PARegressor"}


def _stream(model_name):
    if model_name in REGRESSORS:
        # a numeric target from the phishing features
        return [(x, x["https"] + 0.5 * x["long_url"]) for x, _ in datasets.Phishing()]
    return list(datasets.Phishing())


LINEAR_AND_BAYES = (
    "linear_model.LogisticRegression",
    "linear_model.LinearRegression",
    "linear_model.Perceptron",
    "linear_model.PAClassifier",
    "linear_model.PARegressor",
    "linear_model.SoftmaxRegression",
    "linear_model.ALMAClassifier",
    "naive_bayes.GaussianNB",
    "naive_bayes.MultinomialNB",
    "naive_bayes.BernoulliNB",
    "naive_bayes.ComplementNB",
)


@pytest.mark.parametrize("model", LINEAR_AND_BAYES)
def test_every_supported_model_roundtrips(model):
    pre = [] if "naive_bayes" in model else ["preprocessing.StandardScaler"]
    if model in ("naive_bayes.MultinomialNB", "naive_bayes.ComplementNB"):
        pre = ["preprocessing.MinMaxScaler"]
    learner = RiverLearner(model, preprocessing=pre)
    data = _stream(model)
    for x, y in data[:400]:
        learner.learn_one(x, y)
    restored = RiverLearner(model, preprocessing=pre)
    restored.load_state_dict(learner.state_dict())
    probe = [x for x, _ in data[400:700]]
    assert [learner.predict_one(x) for x in probe] == [restored.predict_one(x) for x in probe]
    # and both continue identically
    for x, y in data[400:700]:
        learner.learn_one(x, y)
        restored.learn_one(x, y)
    assert learner.state_dict() == restored.state_dict()


def test_nested_river_objects_from_tables():
    learner = RiverLearner(
        "linear_model.LogisticRegression",
        model_params={"optimizer": {"class": "optim.Adam", "lr": 0.05}, "l2": 0.001},
    )
    assert type(learner.estimator.optimizer).__name__ == "Adam"
    assert learner.estimator.optimizer.lr.learning_rate == 0.05


def test_bad_models_are_refused_clearly():
    with pytest.raises(ValueError, match="no such model in river: 'linear_model.LogisticRegresion'; did you mean 'linear_model.LogisticRegression'"):
        RiverLearner("linear_model.LogisticRegresion")
    with pytest.raises(ValueError, match="did you mean 'tree.HoeffdingTreeClassifier'"):
        RiverLearner("HoeffdingTreeClassifier")
    with pytest.raises(ValueError, match="preprocessing step 'linear_model.LinearRegression' is not a river transformer"):
        RiverLearner("linear_model.LogisticRegression", preprocessing=["linear_model.LinearRegression"])
    with pytest.raises(ValueError, match="StandardScaler is not a river classifier, regressor or anomaly detector"):
        RiverLearner("preprocessing.StandardScaler")
    with pytest.raises(ValueError, match="linear_model.LogisticRegression.*unexpected keyword"):
        RiverLearner("linear_model.LogisticRegression", model_params={"bogus": 1})
    with pytest.raises(ValueError, match="no such model in river: 'datasets.Phishing'"):
        RiverLearner("datasets.Phishing")


def test_state_of_another_model_is_refused():
    a = RiverLearner("linear_model.LogisticRegression", preprocessing=["preprocessing.StandardScaler"])
    b = RiverLearner("linear_model.LogisticRegression")
    with pytest.raises(ValueError, match="state holds a Pipeline"):
        b.load_state_dict(a.state_dict())
