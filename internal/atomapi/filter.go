package atomapi

// Simple returns the simple expression {operator, property, argument}. IS_NULL
// and IS_NOT_NULL take no arguments; BETWEEN takes two; the others one (see
// OperatorArgs). The platform checks the count.
func Simple(op, property string, args ...string) Expression {
	e := Expression{Operator: op, Property: property}
	if len(args) > 0 {
		e.Argument = make([]FlexString, len(args))
		for i, a := range args {
			e.Argument[i] = FlexString(a)
		}
	}
	return e
}

// Eq is property EQUALS value.
func Eq(property, value string) Expression { return Simple(OpEquals, property, value) }

// Between is property BETWEEN [from, to], e.g. a date window in FormatTime form.
func Between(property, from, to string) Expression { return Simple(OpBetween, property, from, to) }

// IsNull is property IS_NULL.
func IsNull(property string) Expression { return Simple(OpIsNull, property) }

// IsNotNull is property IS_NOT_NULL.
func IsNotNull(property string) Expression { return Simple(OpIsNotNull, property) }

// And groups e with "and". It returns nil for no expressions (match all) and the
// lone expression itself for one: the platform may reject a one-element group.
func And(e ...Expression) *Expression { return group(OpAnd, e) }

// Or groups e with "or", with And's rules for zero and one expressions.
func Or(e ...Expression) *Expression { return group(OpOr, e) }

func group(op string, e []Expression) *Expression {
	switch len(e) {
	case 0:
		return nil
	case 1:
		x := e[0]
		return &x
	}
	return &Expression{Operator: op, NestedExpression: append([]Expression(nil), e...)}
}
