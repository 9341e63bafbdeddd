import pytest

from common.transitions import handler_table


def test_each_table_is_its_own_and_a_kind_has_one_handler():
    table, on = handler_table()
    other, _ = handler_table()

    @on("inserted")
    def inserted(state, event):
        return state, []

    assert table == {"inserted": inserted} and other == {}
    with pytest.raises(ValueError, match="inserted"):
        on("inserted")(lambda state, event: (state, []))
