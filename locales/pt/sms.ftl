## veriflow SMS verification texts, Portuguese. Variables: see en/sms.ftl.
## Portuguese CLDR plurals: `one` covers 0 and 1.

verify = { $app_name }: seu código de verificação é { $code }. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

login = { $code } é seu código de acesso ao { $app_name }. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. Não o compartilhe.

signup = Boas-vindas ao { $app_name }! Seu código é { $code }. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

password-reset = { $app_name }: use { $code } para redefinir sua senha. Ele expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. Não pediu? Ignore esta mensagem.

transaction = { $app_name }: { $code } confirma sua transação. Válido por { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. Não o compartilhe.
