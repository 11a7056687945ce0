"""The generated code is committed; it must match the .proto files."""

from decision import protogen


def test_generated_code_is_fresh():
    assert protogen.main(["--check"]) == 0


def test_generated_imports_need_no_path_tricks():
    from decision.nba.v1 import decision_pb2, decision_pb2_grpc

    assert decision_pb2.DESCRIPTOR.package == "nba.v1"
    assert hasattr(decision_pb2_grpc, "DecisionServiceStub")
