## veriflow SMS verification texts, Portuguese. Variables: see en/sms.ftl.
## Portuguese CLDR plurals: `one` covers 0 and 1.

verify = { $app_name }: seu código de verificação é { $code }. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

login = { $code } é seu código do { $app_name }. Expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. Não compartilhe.

signup = Boas-vindas ao { $app_name }! Seu código é { $code }. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

password-reset = { $app_name }: { $code } redefine sua senha. Expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

transaction = { $app_name }: { $code } confirma sua transação. Vale { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. Não compartilhe.
